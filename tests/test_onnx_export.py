"""`python -m compression export` and `translate --backend onnx` end to end on tiny models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from compression.runtime import manifest
from compression.runtime.catalogue import list_exported
from compression.runtime.search import SearchConfig
from compression.runtime.translator import load_translator
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_model_and_tokenizer
from tests.test_onnx_compact import quantize_records, write_variant_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported_all(tmp_path_factory):
    """A tiny base checkpoint and one compressed variant, exported with `export --all`."""
    from compression.__main__ import main
    from compression.train.checkpoint import save_model

    tmp = tmp_path_factory.mktemp("export_all")
    model, tok = tiny_model_and_tokenizer(seed=5)
    save_model(tmp / "base", model, tok, {"test_2016_flickr": {"greedy": {"bleu": 1.5}, "beam5": {"bleu": 2.5}}})
    base_bytes = sum(p.stat().st_size for p in (tmp / "base").iterdir() if p.name != "tokenizer.model")
    write_variant_dir(tmp / "variants" / "some-dir", quantize_records(model, "codebook"), model, tok, "tiny-kmeans",
                      "kmeans", base_bytes)
    assert main(["export", "--all", "--model", str(tmp / "base"), "--variants-root", str(tmp / "variants"),
                 "--out", str(tmp / "onnx")]) == 0
    return tmp, model, tok


def test_export_all_writes_every_variant_with_manifests(exported_all):
    tmp, _, _ = exported_all
    found = {m["name"]: m for m in list_exported(tmp / "onnx")}
    assert set(found) == {"base", "tiny-kmeans", "fp16", "int8"}
    assert found["base"]["bleu"] == 2.5 and found["base"]["bleu_greedy"] == 1.5  # PyTorch scores carried over
    assert {m["precision"] for m in found.values()} == {"fp32", "fp16", "int8"}
    assert found["tiny-kmeans"]["storage"] == "stored" and found["tiny-kmeans"]["bits"] == 4
    assert found["base"]["ratio"] == pytest.approx(found["base"]["base_model_bytes"] / found["base"]["model_bytes"], abs=1e-3)
    for m in found.values():
        directory = Path(m["path"])
        manifest.verify(directory)
        if m["storage"] == "stored":  # no graph files: the graphs built at load pass the checker
            from compression.runtime.graphs_int8 import build_runtime_graphs, embed_weights, read_variant

            graphs = build_runtime_graphs(*read_variant(directory))
            for model in graphs.models.values():
                onnx.checker.check_model(embed_weights(model, graphs.arrays), full_check=True)
            continue
        for f in ("encoder.onnx", "decoder.onnx"):
            onnx.checker.check_model(str(directory / f), full_check=True)


def test_graphs_have_dynamic_batch_and_length_axes(exported_all):
    tmp, _, _ = exported_all
    enc = onnx.load(str(tmp / "onnx" / "base" / "encoder.onnx"), load_external_data=False)
    dec = onnx.load(str(tmp / "onnx" / "base" / "decoder.onnx"), load_external_data=False)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in [*enc.graph.input, *dec.graph.input]}
    assert dims["src_ids"] == ["batch", "src_len"]
    assert dims["past_k_0"][0] == "rows" and dims["past_k_0"][2] == "past_len"
    assert dims["cross_k_0"][2] == "src_len"


def test_fp16_and_int8_translate_close_to_pytorch(exported_all):
    from compression.train.translator import TorchTranslator

    tmp, model, tok = exported_all
    ids = tok.encode(SOURCES)
    ref = TorchTranslator(model, tok).translate_ids(ids, SearchConfig())
    for name in ("fp16", "int8"):
        out = load_translator(tmp / "onnx", variant=name).translate_ids(ids, SearchConfig())
        first = [a[:3] == b[:3] for a, b in zip(out, ref, strict=True)]
        assert np.mean(first) >= 0.5, name  # random tiny weights: low precision only perturbs late tokens


def test_fp16_graph_holds_fp16_weights(exported_all):
    tmp, _, _ = exported_all
    weights = (tmp / "onnx" / "fp16" / "weights.bin").stat().st_size
    assert weights < 0.55 * (tmp / "onnx" / "base" / "weights.bin").stat().st_size


def test_unknown_variant_names_the_known_ones(exported_all):
    from compression.export.writer import plan_exports

    tmp, _, _ = exported_all
    with pytest.raises(KeyError, match="tiny-kmeans"):
        plan_exports(["nope"], tmp / "base", tmp / "variants")


def test_translate_cli_with_onnx_backend_reports_provider(tmp_path):
    out = export_tiny(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "compression", "translate", "--model", str(out), "--backend", "onnx",
                           "--device", "cuda", "--beam", "2"], input="A man is riding a bike.\n\nTwo dogs.\n",
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert "provider: CPUExecutionProvider" in proc.stderr or "provider: CUDAExecutionProvider" in proc.stderr
    lines = proc.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == ""  # one line out per line in, blank stays blank


def test_a_shipped_kmeans_4bit_variant_is_served_from_its_stored_bytes(tmp_path):
    """Served bytes = stored bytes (within 2%: the export's own manifest and spec), and it translates."""
    from compression.export.writer import export_directory

    try:
        from compression.compress.variants import list_variants
    except ImportError:
        pytest.skip("compression.compress.variants not available")
    kmeans4 = [v for v in list_variants() if v.get("method") == "kmeans" and v.get("bits") == 4]
    if not kmeans4:
        pytest.skip("no shipped k-means 4-bit variant under models/")
    for v in kmeans4:
        man = export_directory(v["path"], tmp_path / v["name"])
        assert man["storage"] == "stored"
        assert abs(man["model_bytes"] - v["model_bytes"]) <= 0.02 * v["model_bytes"], (man["model_bytes"], v["model_bytes"])
        assert load_translator(tmp_path / v["name"]).translate(["A man is riding a bicycle."]) == ["Ein Mann fährt Fahrrad."]
