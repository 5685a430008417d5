"""POST /attention and the page at / through the ASGI app on real exported tiny variants."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from compression.runtime import manifest
from compression.runtime import onnx_format as fmt
from compression.runtime.attention import OnnxAttention
from compression.runtime.catalogue import find_exported
from compression.runtime.search import SearchConfig
from compression.runtime.translator import load_translator
from tests.onnx_fixtures import SOURCES
from tests.service_helpers import make_app, running

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(variants_root):
    with running(make_app(variants_root)) as c:
        yield c


def post(client, body: dict, variant: str = "tiny"):
    return client.post(f"/attention?variant={variant}", json=body)


@pytest.mark.parametrize("kind", ["cross", "encoder", "decoder"])
def test_png_heatmap(client, kind):
    from PIL import Image

    r = post(client, {"text": SOURCES[0], "kind": kind, "layer": 1, "head": 1})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.content[:8] == PNG_MAGIC
    assert (r.headers["x-tzip-layers"], r.headers["x-tzip-heads"]) == ("2", "2")
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "PNG" and image.size[0] >= 300 and image.size[1] >= 260
    # more tokens, a larger picture (labels stay readable)
    longer = post(client, {"text": " ".join(SOURCES[:3]), "kind": kind, "layer": 1, "head": 1})
    assert Image.open(io.BytesIO(longer.content)).size[0] > image.size[0]


@pytest.mark.parametrize("variant", ["tiny", "tiny-int8"])
def test_json_weights_match_the_token_counts_and_the_variants_own_translation(client, variants_root, variant):
    directory = find_exported(variant, variants_root)
    att = OnnxAttention(directory)
    src = att.source_ids(SOURCES[1])
    hyp = load_translator(directory).translate_ids([src], SearchConfig(max_len=att.spec.max_positions - 1))[0]
    shapes = {}
    for kind in ("encoder", "decoder", "cross"):
        r = post(client, {"text": SOURCES[1], "kind": kind, "layer": 0, "head": 1, "format": "json"}, variant)
        assert r.status_code == 200, r.text
        body = r.json()
        S, T = len(body["source_tokens"]), len(body["target_tokens"])
        assert S == len(src) and T == len(hyp) + 1 and body["target_tokens"][-1] == "</s>"
        assert (body["variant"], body["layers"], body["heads"], body["target_from"]) == (variant, 2, 2, "variant")
        assert body["translation"] == att.tokenizer.decode([hyp])[0]
        w = np.asarray(body["weights"])
        assert w.shape == (len(body["rows"]), len(body["cols"]))
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-4)
        shapes[kind] = w.shape
        expected = att.maps(src, hyp).select(kind, 0, 1)
        np.testing.assert_allclose(w, expected, atol=1e-5)
        assert body["entropy"] >= 0
    assert shapes == {"encoder": (S, S), "decoder": (T, T), "cross": (T, S)}


def test_a_given_target_is_teacher_forced(client):
    r = post(client, {"text": SOURCES[0], "target": "Ein Mann fährt Fahrrad.", "format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target_from"] == "request" and body["translation"] == "Ein Mann fährt Fahrrad."
    assert body["rows"] == body["target_tokens"] and body["cols"] == body["source_tokens"]


@pytest.mark.parametrize("body, message", [
    ({"layer": 2}, "layer 2 is out of range: variant 'tiny' has 2 cross-attention layers, numbered 0 to 1"),
    ({"kind": "encoder", "layer": 9}, "layer 9 is out of range: variant 'tiny' has 2 encoder self-attention layers"),
    ({"head": 2}, "head 2 is out of range: variant 'tiny' has 2 heads per layer, numbered 0 to 1"),
    ({"head": -1}, "head: Input should be greater than or equal to 0"),
    ({"layer": "1"}, "layer: Input should be a valid integer"),
    ({"kind": "self"}, "kind: Input should be 'encoder', 'decoder' or 'cross'"),
    ({"format": "svg"}, "format: Input should be 'png' or 'json'"),
    ({"text": "  "}, "text 0 is empty or whitespace only"),
])
def test_bad_requests_get_422_with_a_clear_message(client, body, message):
    r = post(client, {"text": SOURCES[0], **body})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_unknown_variant_is_404_like_translate(client):
    r = post(client, {"text": SOURCES[0]}, variant="nope")
    assert r.status_code == 404
    assert r.json()["known_variants"] == ["tiny", "tiny-int8"]


def test_an_export_without_attention_graph_is_501_with_the_fix(writable_root):
    directory = find_exported("tiny", writable_root)
    (directory / fmt.ATTENTION_FILE).unlink()
    manifest.write(directory, {k: v for k, v in manifest.read(directory).items() if k not in ("files", "bytes")})
    with running(make_app(writable_root)) as c:
        assert c.post("/translate?variant=tiny", json={"text": SOURCES[0]}).status_code == 200  # serving goes on
        r = post(c, {"text": SOURCES[0]})
    assert r.status_code == 501
    assert "re-export it with `python -m compression export --variant tiny`" in r.json()["detail"]


def test_page_is_served_with_its_controls(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for element in ('id="text"', 'id="variant"', 'id="go"', 'id="translation"', 'id="heatmap"', "/attention", "/variants"):
        assert element in r.text
    assert "/attention" in client.get("/openapi.json").json()["paths"]


def test_page_file_is_packaged():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    assert any(Path("static/index.html").match(pattern) for pattern in data)


def test_attention_work_shares_the_gpu_lock(client, monkeypatch):
    """The attention session and the translation it is drawn from run under sessions.GPU_WORK (shared), so an
    attention request never overlaps a CUDA-graph capture (which fails every other CUDA call of the process)."""
    import contextlib

    from compression.runtime import sessions

    held = []

    class Recorder:
        @contextlib.contextmanager
        def shared(self):
            held.append("shared")
            yield

    monkeypatch.setattr(sessions, "GPU_WORK", Recorder())
    r = post(client, {"text": SOURCES[1], "kind": "cross", "layer": 0, "head": 0, "format": "json"})
    assert r.status_code == 200, r.text
    assert len(held) >= 2  # the translation and the maps
