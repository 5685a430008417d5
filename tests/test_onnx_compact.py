"""Compact weights decoded inside ONNX graphs equal compact.dequantize exactly, for every record kind."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from compression.runtime import compact
from compression.runtime.graphs import Graph
from compression.runtime.graphs_compact import CompactWeights, pack_codes, unpack_codes


def records(rng: np.random.Generator) -> dict[str, dict]:
    shape = [6, 10]
    alpha = rng.random((6, 1)).astype(np.float32)
    sparse_idx = np.sort(rng.choice(60, 9, replace=False))
    sparse_idx[-1] = 59  # a long final gap forces escape symbols with 2-bit offsets
    return {
        "kmeans4": {"kind": "codebook", "shape": shape, "bits": 4, "rows_per_group": 6,
                    "codes": rng.integers(0, 16, shape, dtype=np.uint8), "codebook": rng.standard_normal((1, 16)).astype(np.float32)},
        "row2": {"kind": "codebook", "shape": shape, "bits": 2, "rows_per_group": 1,
                 "codes": rng.integers(0, 4, shape, dtype=np.uint8), "codebook": rng.standard_normal((6, 4)).astype(np.float16)},
        "group3": {"kind": "codebook", "shape": shape, "bits": 3, "rows_per_group": 2,
                   "codes": rng.integers(0, 8, shape, dtype=np.uint8), "codebook": rng.standard_normal((3, 8)).astype(np.float32)},
        "binary": {"kind": "binary", "shape": shape, "bits": 1, "rows_per_group": 1, "symmetric": True,
                   "codes": rng.integers(0, 2, shape, dtype=np.uint8), "codebook": np.concatenate([-alpha, alpha], 1)},
        "int8": {"kind": "int8", "shape": shape, "q": rng.integers(-127, 128, shape).astype(np.int8),
                 "scale": rng.random(6).astype(np.float16)},
        "sparse_values": {"kind": "sparse", "shape": shape, "index_bits": 2, "indices": sparse_idx,
                          "values": rng.standard_normal(9).astype(np.float16)},
        "sparse_codes": {"kind": "sparse", "shape": shape, "index_bits": 4, "indices": sparse_idx, "bits": 3,
                         "codes": rng.integers(0, 8, 9).astype(np.uint8), "codebook": rng.standard_normal((1, 8)).astype(np.float32)},
        "bias": {"kind": "dense", "shape": [10], "array": rng.standard_normal(10).astype(np.float16)},
    }


def decode_in_onnx(recs: dict[str, dict], name: str, transpose: bool, dtype=np.float32) -> np.ndarray:
    g = Graph("decode", dtype)
    src = CompactWeights(recs)
    value = src.vector(g, name) if len(recs[name]["shape"]) == 1 else src.matrix(g, name, transpose)
    g.add_output(value, "w", g.elem_type, None)
    session = ort.InferenceSession(g.to_model().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {})[0]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
def test_pack_roundtrip(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, 37, dtype=np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.size == -(-37 * {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 8: 8}[bits] // 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits, 37), codes)


def test_every_record_kind_decodes_exactly(tmp_path):
    written = records(np.random.default_rng(0))
    compact.write_file(tmp_path / "w.tzc", written)
    recs = compact.read_file(tmp_path / "w.tzc")  # exactly what an exporter reads from a variant
    for name, rec in recs.items():
        want = compact.dequantize(rec)
        np.testing.assert_array_equal(decode_in_onnx(recs, name, transpose=False), want, err_msg=name)
        if want.ndim == 2:
            np.testing.assert_array_equal(decode_in_onnx(recs, name, transpose=True), want.T, err_msg=name)


def test_fp16_graph_decodes_to_fp16(tmp_path):
    recs = records(np.random.default_rng(1))
    out = decode_in_onnx(recs, "kmeans4", transpose=False, dtype=np.float16)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, compact.dequantize(recs["kmeans4"]).astype(np.float16))


def test_codes_are_stored_packed():
    recs = records(np.random.default_rng(2))
    g = Graph("decode")
    CompactWeights(recs).matrix(g, "kmeans4", transpose=True)
    sizes = {name: int(np.prod(t.dims)) for name, t in g.initializers.items()
             if t.data_type == TensorProto.UINT8 and "codes" in name}
    assert sizes == {"kmeans4.codes4": 30}  # 60 codes of 4 bits in 30 bytes


# -- a whole compressed variant, exported and run --------------------------------------------------
def quantize_records(model, kind: str, bits: int = 4, sparsity: float = 0.8) -> dict[str, dict]:
    """Compact records of a tiny model: every matrix as 4-bit codebook / sparse, vectors fp16 (like the variants)."""
    recs = {}
    for name, p in model.state_dict().items():
        w = p.detach().float().numpy()
        if w.ndim == 1 or name == "final_logits_bias":
            recs[name] = {"kind": "dense", "shape": list(w.shape), "array": w.astype(np.float16)}
        elif kind == "codebook":
            cb = np.quantile(w, np.linspace(0, 1, 1 << bits))[None, :].astype(np.float32)
            codes = np.abs(w[..., None] - cb[0]).argmin(-1).astype(np.uint8)
            recs[name] = {"kind": "codebook", "shape": list(w.shape), "bits": bits, "rows_per_group": w.shape[0],
                          "codes": codes, "codebook": cb}
        else:
            flat = w.reshape(-1)
            keep = np.sort(np.argsort(-np.abs(flat))[: int(flat.size * (1 - sparsity))])
            recs[name] = {"kind": "sparse", "shape": list(w.shape), "index_bits": 4, "indices": keep,
                          "values": flat[keep].astype(np.float16)}
    return recs


def write_variant_dir(directory, records, model, tok, name: str, method: str, base_model_bytes: int):
    """A variant directory in the compression engineer's format, written by hand (no training needed)."""
    import json

    from compression.runtime import manifest

    directory.mkdir(parents=True)
    compact.write_file(directory / compact.WEIGHTS_FILE, records)
    (directory / "variant.json").write_text(json.dumps({"name": name, "model": model.cfg.to_dict()}))
    tok.save(directory / "tokenizer.model")
    manifest.write(directory, {"name": name, "method": method, "bits": 4, "sparsity": None, "format": "tzip-compact-1",
                               "bleu": 1.0, "bleu_greedy": 1.0, "base_model_bytes": base_model_bytes})


@pytest.mark.parametrize("kind", ["codebook", "sparse"])
def test_compact_variant_exports_small_and_token_identical(tmp_path, kind):
    import onnx
    import torch

    from compression.compress.variants import load_records_model
    from compression.export.writer import ExportConfig, export_directory
    from compression.runtime.search import SearchConfig
    from compression.runtime.translator import load_translator
    from compression.train.translator import TorchTranslator
    from tests.onnx_fixtures import SOURCES, tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(seed=3)
    recs = quantize_records(model, kind)
    variant = tmp_path / "v"
    write_variant_dir(variant, recs, model, tok, f"tiny-{kind}", kind, base_model_bytes=10**6)
    man = export_directory(variant, tmp_path / "out", ExportConfig(stored=False), base_dir=variant)
    assert man["storage"] == "compact" and man["name"] == f"tiny-{kind}" and man["ratio"] == round(10**6 / man["model_bytes"], 3)

    # the initializers are about as small as the compact file (codes stay packed: nothing is expanded on disk)
    stored = (tmp_path / "out" / "weights.bin").stat().st_size + sum(
        len(t.raw_data) for f in ("encoder.onnx", "decoder.onnx")
        for t in onnx.load(str(tmp_path / "out" / f), load_external_data=False).graph.initializer)
    assert stored <= 1.3 * (variant / compact.WEIGHTS_FILE).stat().st_size + 16 * 1024

    ref = TorchTranslator(load_records_model(compact.read_tensors(variant), model.cfg), tok)
    onnx_tr = load_translator(tmp_path / "out")
    ids = tok.encode(SOURCES)
    with torch.no_grad():
        for cfg in (SearchConfig(beam=1), SearchConfig(beam=3)):
            assert onnx_tr.translate_ids(ids, cfg) == ref.translate_ids(ids, cfg)
