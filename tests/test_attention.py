"""Attention maps: the ONNX attention graph against PyTorch's ``last_weights`` (dense, compact, fp16, int8
exports), what the export writes, the NumPy helpers (labels, index checks, entropy) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compression.runtime import manifest
from compression.runtime import onnx_format as fmt
from compression.runtime.attention_maps import (
    KINDS,
    AttentionIndexError,
    EntropyMeter,
    Shape,
    map_entropy,
    row_entropy,
    run_batch,
    valid_rows,
)
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_export_fixture, tiny_model_and_tokenizer  # noqa: F401

TARGETS = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee heute.", "Kinder", "Die Katze schläft."]


def both_backends(model, tok, export_dir: Path, sources=SOURCES[:4], targets=TARGETS):
    """The maps of a padded batch from the ONNX graph and from the PyTorch model."""
    from compression.analysis.attention_torch import TorchAttention
    from compression.runtime.attention import OnnxAttention

    src, tgt = tok.encode(sources), tok.encode(targets)
    c = model.cfg
    onnx_maps = run_batch(OnnxAttention(export_dir), src, tgt, c.pad_id, c.decoder_start_id)
    torch_maps = run_batch(TorchAttention(model, tok), src, tgt, c.pad_id, c.decoder_start_id)
    return onnx_maps, torch_maps, src, tgt


def test_onnx_attention_equals_pytorch_last_weights(tiny_export):
    model, tok = tiny_model_and_tokenizer(0)
    onnx_maps, torch_maps, src, tgt = both_backends(model, tok, tiny_export)
    B, S, T = len(src), max(map(len, src)), max(map(len, tgt))
    c = model.cfg
    expected = {"encoder": (c.encoder_layers, B, c.n_heads, S, S), "decoder": (c.decoder_layers, B, c.n_heads, T, T),
                "cross": (c.decoder_layers, B, c.n_heads, T, S)}
    for kind in KINDS:
        assert onnx_maps[kind].shape == expected[kind], kind
        np.testing.assert_allclose(onnx_maps[kind], torch_maps[kind], atol=1e-4, err_msg=kind)
    # padded source keys get no weight, decoder self-attention is causal, every row is a distribution
    short = int(np.argmin([len(s) for s in src]))
    assert np.all(onnx_maps["cross"][:, short, :, :, len(src[short]):] < 1e-6)
    assert np.all(np.triu(onnx_maps["decoder"], k=1) < 1e-6)
    for kind in KINDS:
        np.testing.assert_allclose(onnx_maps[kind].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("stored", [False, True], ids=["graph-files", "stored"])
def test_compact_variant_decodes_its_weights_in_the_attention_graph(tmp_path, stored):
    """Graph files decode the codes in the graph; the stored form builds the graph at load: both show the
    variant's exact weights."""
    from compression.compress.variants import load_records_model
    from compression.export.writer import ExportConfig, export_directory
    from compression.runtime import compact
    from tests.test_onnx_compact import quantize_records, write_variant_dir

    model, tok = tiny_model_and_tokenizer(seed=3)
    recs = quantize_records(model, "codebook")
    write_variant_dir(tmp_path / "v", recs, model, tok, "tiny-kmeans", "kmeans", base_model_bytes=10**6)
    man = export_directory(tmp_path / "v", tmp_path / "out", ExportConfig(stored=stored), base_dir=tmp_path / "v")
    assert man["storage"] == ("stored" if stored else "compact")
    dequantized = load_records_model(compact.read_tensors(tmp_path / "v"), model.cfg)
    onnx_maps, torch_maps, _, _ = both_backends(dequantized, tok, tmp_path / "out")
    _, dense_maps, _, _ = both_backends(model, tok, tmp_path / "out")
    for kind in KINDS:
        np.testing.assert_allclose(onnx_maps[kind], torch_maps[kind], atol=1e-4, err_msg=kind)
    assert max(np.abs(onnx_maps[k] - dense_maps[k]).max() for k in KINDS) > 1e-3  # really the quantized weights


@pytest.mark.parametrize("precision, atol", [("fp16", 0.02), ("int8", 0.1)])
def test_fp16_and_int8_exports_have_an_attention_graph_close_to_fp32(tmp_path, precision, atol):
    model, tok = tiny_model_and_tokenizer(0)
    directory = export_tiny(tmp_path, f"tiny-{precision}", precision=precision)
    onnx_maps, torch_maps, _, _ = both_backends(model, tok, directory)
    for kind in KINDS:
        assert onnx_maps[kind].dtype == np.float32
        np.testing.assert_allclose(onnx_maps[kind].sum(-1), 1.0, atol=2e-3)
        np.testing.assert_allclose(onnx_maps[kind], torch_maps[kind], atol=atol, err_msg=kind)


def test_attention_graph_is_in_the_manifest_but_adds_no_weights_and_no_model_bytes(tiny_export, tmp_path):
    from compression.export.writer import state_arrays
    from compression.runtime.graphs import DenseWeights, build_decoder, build_encoder, save_models

    man = manifest.read(tiny_export)
    assert fmt.ATTENTION_FILE in man["files"]
    on_disk = {p.name: p.stat().st_size for p in tiny_export.iterdir()}
    assert man["model_bytes"] == sum(n for name, n in on_disk.items() if name not in fmt.NOT_MODEL_FILES)
    # the same weights without the attention graph: weights.bin is byte for byte as large
    model, tok = tiny_model_and_tokenizer(0)
    weights = DenseWeights(state_arrays(model))
    save_models({fmt.ENCODER_FILE: build_encoder(model.cfg, weights), fmt.DECODER_FILE: build_decoder(model.cfg, weights)},
                tmp_path)
    assert (tmp_path / fmt.WEIGHTS_FILE).stat().st_size == on_disk[fmt.WEIGHTS_FILE]


def test_an_export_without_the_attention_graph_says_how_to_fix_it(tiny_export, tmp_path):
    import shutil

    from compression.runtime.attention import NoAttentionGraph, OnnxAttention

    old = Path(shutil.copytree(tiny_export, tmp_path / "old"))
    (old / fmt.ATTENTION_FILE).unlink()
    meta = {k: v for k, v in manifest.read(old).items() if k not in ("files", "bytes")}
    manifest.write(old, meta)
    with pytest.raises(NoAttentionGraph, match=r"re-export it with `python -m compression export --variant tiny`"):
        OnnxAttention(old)


def test_sentence_maps_labels_and_index_checks(tiny_export):
    from compression.runtime.attention import OnnxAttention

    att = OnnxAttention(tiny_export)
    src = att.source_ids(SOURCES[0])
    maps = att.maps(src, att.target_ids(TARGETS[0]))
    S, T = len(maps.source_tokens), len(maps.target_tokens)
    assert S == len(src) and maps.source_tokens[-1] == maps.target_tokens[-1] == "</s>"
    assert maps.decoder_input_tokens[0] == "<s>" and maps.decoder_input_tokens[1:] == maps.target_tokens[:-1]
    for kind, shape in (("encoder", (S, S)), ("decoder", (T, T)), ("cross", (T, S))):
        rows, cols = maps.labels(kind)
        assert maps.select(kind, 1, 1).shape == shape == (len(rows), len(cols))
    with pytest.raises(AttentionIndexError, match="layer 2 is out of range: v has 2 cross-attention layers, numbered 0 to 1"):
        maps.select("cross", 2, 0, "v")
    with pytest.raises(AttentionIndexError, match="head 5 is out of range: v has 2 heads per layer"):
        maps.select("encoder", 0, 5, "v")
    with pytest.raises(AttentionIndexError, match="kind 'x' is not one of encoder, decoder, cross"):
        maps.labels("x")
    assert att.shape == Shape(2, 2, 2)


def test_entropy_of_sharp_and_uniform_rows():
    assert row_entropy(np.array([0.0, 1.0, 0.0])) == pytest.approx(0.0)
    assert row_entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))
    # decoder maps leave out their first row (a single key: entropy 0 in every model)
    causal = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    assert map_entropy(causal, "decoder") == pytest.approx((np.log(2) + np.log(3)) / 2)
    rows = valid_rows("decoder", np.array([4, 2]), np.array([3, 1]))
    assert rows.tolist() == [[False, True, True], [False, False, False]]
    # the meter averages over valid rows only: padding rows (uniform here) do not count
    w = np.full((1, 2, 1, 3, 3), 1 / 3)
    w[0, 0, 0, :2] = np.eye(3)[:2]
    maps = {"encoder": w, "decoder": w, "cross": w}
    meter = EntropyMeter()
    meter.add(maps, src_lens=[2, 0], tgt_lens=[2, 0])
    means = meter.means()
    assert means["encoder"][0, 0] == pytest.approx(0.0) and means["cross"][0, 0] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny base checkpoint and a k-means variant under one models root, and their ONNX exports."""
    from compression.export.writer import export_directory
    from compression.train.checkpoint import save_model
    from tests.test_onnx_compact import quantize_records, write_variant_dir

    root = tmp_path_factory.mktemp("attention_models")
    model, tok = tiny_model_and_tokenizer(seed=4)
    save_model(root / "models" / "base", model, tok, {"test_2016_flickr": {"beam5": {"bleu": 2.0}}})
    write_variant_dir(root / "models" / "v", quantize_records(model, "codebook"), model, tok, "tiny-kmeans", "kmeans", 10**6)
    for name, d in (("base", root / "models" / "base"), ("tiny-kmeans", root / "models" / "v")):
        export_directory(d, root / "onnx" / name, base_dir=root / "models" / "base")
    return root


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_cli_comparison_figure(tiny_models, tmp_path, backend):
    from PIL import Image

    from compression.__main__ import main

    out = tmp_path / "fig.png"
    args = ["attention", "--variants", "base,tiny-kmeans", "--text", SOURCES[1], "--kind", "all", "--layer", "1",
            "--head", "1", "--out", str(out), "--backend", backend, "--models-root", str(tiny_models / "models"),
            "--onnx-root", str(tiny_models / "onnx")]
    assert main(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(out).size[0] > 800
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["target_from"] == "base's greedy translation"
    assert [(p["variant"], p["kind"]) for p in record["panels"]] == [(v, k) for v in ("base", "tiny-kmeans") for k in KINDS]
    bad_layer = ["attention", "--variants", "base", "--text", SOURCES[1], "--layer", "7", "--out", str(out),
                 "--models-root", str(tiny_models / "models")]
    assert main(bad_layer) == 2


def test_cli_entropy_table(tiny_models, tmp_path):
    from compression.__main__ import main

    out = tmp_path / "entropy"
    assert main(["attention", "--entropy", "--limit", "6", "--variants", "base,tiny-kmeans", "--out", str(out),
                 "--models-root", str(tiny_models / "models")]) == 0
    result = json.loads(Path(f"{out}.json").read_text())["results"]
    for target in ("reference", "own"):
        for kind in KINDS:
            grid = np.asarray(result["tiny-kmeans"][target][kind])
            assert grid.shape == (2, 2) and np.all(grid > 0)
    table = Path(f"{out}.md").read_text()
    assert "| base | none | 1.0x | 2.00 |" in table and "+0.0%" in table and "6 sentences of test_2016_flickr" in table
    assert Path(f"{out}.png").read_bytes()[:4] == b"\x89PNG" and Path(f"{out}_own.png").exists()
