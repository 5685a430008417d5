"""The in-memory int8 runtime form (compression/onnx_int8.py, runtime_memory.py): grids, graphs, parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from compression.runtime import compact
from compression.runtime import onnx_format as fmt
from compression.runtime.graphs_int8 import MATMULS, build_runtime_graphs, int8_matrix
from compression.runtime.memory import MemoryOptions, MemoryTranslator
from compression.runtime.sessions import SessionFactory
from tests.onnx_fixtures import SOURCES, tiny_model_and_tokenizer

ONE_THREAD = SessionFactory(threads=1)


# -- grids ---------------------------------------------------------------------------------------
def test_codebook_lands_on_a_searched_int8_grid():
    rng = np.random.default_rng(0)
    book = rng.standard_normal((1, 16)).astype(np.float32)
    codes = rng.integers(0, 16, (8, 12)).astype(np.uint8)
    rec = {"kind": "codebook", "shape": [8, 12], "bits": 4, "rows_per_group": 8, "codes": codes, "codebook": book}
    q, s = int8_matrix(rec)
    assert q.dtype == np.int8 and s.shape == (8,) and np.all(s == s[0])
    w = compact.dequantize(rec)
    err = np.abs(q * s[:, None] - w)
    assert err.max() <= s[0] / 2 + 1e-7  # on the grid: at most half a step off
    plain = np.abs(book).max() / 127  # the searched scale does at least as well as max|c| / 127
    assert np.square(err).sum() <= np.square(np.rint(w / plain) * plain - w).sum() + 1e-9
    assert len(np.unique(q)) == 16  # still 16 distinct values: one per centroid


def test_scaled_sign_is_exact_and_two_centroids_are_close():
    alpha = np.array([[0.5], [0.25], [2.0]], np.float32)
    codes = np.array([[0, 1, 1, 0]] * 3, np.uint8)
    rec = {"kind": "binary", "shape": [3, 4], "bits": 1, "rows_per_group": 1, "symmetric": True, "codes": codes,
           "codebook": np.concatenate([-alpha, alpha], 1)}
    q, s = int8_matrix(rec)
    assert set(np.unique(q)) == {-1, 1}
    np.testing.assert_array_equal(q * s[:, None], compact.dequantize(rec))
    rec2 = {**rec, "symmetric": False, "rows_per_group": 3, "codebook": np.array([[-0.31, 0.57]], np.float32)}
    q2, s2 = int8_matrix(rec2)
    np.testing.assert_allclose(q2 * s2[:, None], compact.dequantize(rec2), atol=s2[0] / 2)


def test_sparse_zeros_stay_zero_and_int8_records_pass_through():
    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(60, 9, replace=False))
    for extra in ({"values": rng.standard_normal(9).astype(np.float16)},
                  {"bits": 3, "codes": rng.integers(0, 8, 9).astype(np.uint8),
                   "codebook": rng.standard_normal((1, 8)).astype(np.float32)}):
        rec = {"kind": "sparse", "shape": [6, 10], "index_bits": 4, "indices": idx, **extra}
        q, s = int8_matrix(rec)
        w = compact.dequantize(rec)
        assert np.count_nonzero(q) == np.count_nonzero(w) and np.all(q[w == 0] == 0)
        assert np.abs(q * s[:, None] - w).max() <= s.max() / 2 + 1e-7
    rec = {"kind": "int8", "shape": [2, 3], "q": np.arange(6, dtype=np.int8).reshape(2, 3),
           "scale": np.array([0.5, 2], np.float16)}
    q, s = int8_matrix(rec)
    np.testing.assert_array_equal(q * s[:, None], compact.dequantize(rec))


# -- a tiny model through the graphs --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """(torch model with the exact codebook weights, tokenizer, config, records): 4-bit per tensor."""

    from compression.compress.variants import load_records_model

    model, tok = tiny_model_and_tokenizer(seed=3)
    records = {}
    for name, p in model.state_dict().items():
        a = p.detach().numpy().astype(np.float32)
        if name == "positions":
            continue
        if a.ndim == 2 and name != "final_logits_bias":
            book = np.quantile(a, np.linspace(0.02, 0.98, 16)).astype(np.float32)[None, :]
            codes = np.abs(a[..., None] - book[0]).argmin(-1).astype(np.uint8)
            records[name] = {"kind": "codebook", "shape": list(a.shape), "bits": 4, "rows_per_group": a.shape[0],
                             "codes": codes, "codebook": book}
        else:
            records[name] = {"kind": "dense", "shape": list(a.shape), "array": a}
    return load_records_model(records, model.cfg), tok, model.cfg, records


def on_grid_model(records: dict, cfg, qmax: int):
    """The PyTorch model whose matrices are exactly q * scale of ``int8_matrix(record, qmax)``."""
    from compression.compress.variants import load_records_model
    from compression.train.model import ModelConfig

    grid = {}
    for n, r in records.items():
        if r["kind"] == "codebook":
            q, s = int8_matrix(r, qmax)
            r = {"kind": "dense", "shape": r["shape"], "array": q.astype(np.float32) * s[:, None]}
        grid[n] = r
    return load_records_model(grid, ModelConfig.from_dict(vars(cfg)))


def first_steps(translator_or_model, tok, steps: int = 3) -> np.ndarray:
    """Log-probs of ``steps`` teacher-forced greedy steps over SOURCES (B*steps, V)."""
    from compression.runtime.search import pad_batch

    ids = tok.encode(SOURCES)
    src = pad_batch(ids, 0)
    from compression.runtime.translator import OnnxTranslator, OrtStepper

    if isinstance(translator_or_model, OnnxTranslator):
        stepper = OrtStepper(translator_or_model, src, 1)
    else:
        import torch

        from compression.train.translator import TorchStepper

        stepper = TorchStepper(translator_or_model, torch.from_numpy(src), 1)
    last = np.zeros(len(ids), np.int64)
    out = []
    for t in range(steps):
        logp = stepper.step(last, None)
        out.append(logp)
        last = np.array([3 + t] * len(ids), np.int64)  # fixed tokens: both backends see the same inputs
    return np.concatenate(out)


def serve(cfg, records, tok, **kw) -> MemoryTranslator:
    opts = kw.pop("options", MemoryOptions())
    return MemoryTranslator(build_runtime_graphs(cfg, records, **kw), tok, "tiny", ONE_THREAD, options=opts)


def test_fp32_form_equals_pytorch(tiny):
    exact, tok, cfg, records = tiny
    import torch

    with torch.no_grad():
        ref = first_steps(exact, tok)
    np.testing.assert_allclose(first_steps(serve(cfg, records, tok, weights="fp32"), tok), ref, atol=2e-4)


def test_fp16_form_holds_the_codebook_values(tiny):
    exact, tok, cfg, records = tiny
    import torch

    graphs = build_runtime_graphs(cfg, records, weights="fp16")
    emb = graphs.arrays["shared.weight"]
    assert emb.dtype == np.float16
    np.testing.assert_array_equal(emb, compact.dequantize(records["shared.weight"]).astype(np.float16))
    with torch.no_grad():
        ref = first_steps(exact, tok)
    tr = MemoryTranslator(graphs, tok, "tiny", ONE_THREAD)
    np.testing.assert_allclose(first_steps(tr, tok), ref, atol=3e-2)


@pytest.mark.parametrize("matmul", MATMULS)
def test_int8_forms_match_pytorch_on_the_int8_grid(tiny, matmul):
    """Against the PyTorch model whose weights are q * scale: only activation quantization differs."""
    from compression.runtime.graphs_int8 import QMAX

    exact, tok, cfg, records = tiny
    import torch

    with torch.no_grad():
        ref, ref_exact = first_steps(on_grid_model(records, cfg, QMAX[matmul]), tok), first_steps(exact, tok)
    got = first_steps(serve(cfg, records, tok, matmul=matmul), tok)
    assert np.abs(got - ref).max() < 0.1, matmul
    assert np.abs(got - ref).mean() < 0.01, matmul
    assert (got.argmax(-1) == ref_exact.argmax(-1)).mean() > 0.9


def test_int8_graphs_hold_no_float_matrices_and_share_the_embedding(tiny):
    _, tok, cfg, records = tiny
    graphs = build_runtime_graphs(cfg, records, matmul="nbits8", attention=True)
    matrices = {n: a for n, a in graphs.arrays.items() if a.ndim >= 2}
    assert matrices and all(a.dtype in (np.int8, np.uint8) for a in matrices.values())
    assert sum(a.nbytes for a in matrices.values()) == sum(int(np.prod(r["shape"])) for r in records.values()
                                                          if r["kind"] == "codebook")  # one byte each, once
    declared = {}
    for file, blob in graphs.models.items():
        m = onnx.load_from_string(blob)
        assert not [n.op_type for n in m.graph.node if n.op_type in ("DequantizeLinear", "ScatterElements", "MatMul")
                    and any(i in graphs.arrays for i in n.input)], file
        big = [t.name for t in m.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL and
               len(t.raw_data) > 4096 and t.data_type == onnx.TensorProto.FLOAT]
        assert not big, f"{file} holds float weights {big}"
        declared[file] = {t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    emb = "shared.weight.u8"
    assert emb in declared[fmt.ENCODER_FILE] and emb in declared[fmt.DECODER_FILE]
    tr = MemoryTranslator(graphs, tok, "tiny", ONE_THREAD)
    assert not graphs.models  # released once the sessions exist
    assert tr.translate(SOURCES[:2]) == tr.translate(SOURCES[:2])

