"""The ``u8`` runtime form (graphs_int8 + memory): weights held once, batch invariance, greedy parity with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from compression.runtime import huffman
from compression.runtime import onnx_format as fmt
from compression.runtime.graphs import sinusoids
from compression.runtime.graphs_int8 import POSITIONS, U8_ZERO, build_runtime_graphs, int8_matrix
from compression.runtime.memory import MemoryOptions, MemoryTranslator, ort_copies_initializers
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory
from tests import test_runtime_int8 as int8_tests
from tests.onnx_fixtures import SOURCES
from tests.test_runtime_int8 import first_steps, on_grid_model

tiny = int8_tests.tiny  # the same module-scoped fixture: a 4-bit tiny model and its records

ONE_THREAD = SessionFactory(threads=1)
EMBEDDING = "shared.weight.u8T"


def serve(cfg, records, tok, **kw) -> MemoryTranslator:
    opts = kw.pop("options", MemoryOptions())
    release = kw.pop("release", True)
    return MemoryTranslator(build_runtime_graphs(cfg, records, **kw), tok, "tiny", ONE_THREAD, options=opts,
                            release=release)


def test_u8_is_the_default_and_every_matrix_is_a_graph_input_held_once(tiny):
    _, tok, cfg, records = tiny
    graphs = build_runtime_graphs(cfg, records)
    assert graphs.info["matmul"] == "u8"
    matrices = {n for n, a in graphs.arrays.items() if a.ndim == 2 and a.dtype == np.uint8}
    assert EMBEDDING in matrices and set(graphs.fed) == matrices | {POSITIONS}
    codebook = [n for n, r in records.items() if r["kind"] == "codebook"]
    assert sum(graphs.arrays[n].nbytes for n in matrices) == sum(int(np.prod(records[n]["shape"])) for n in codebook)
    for file in (fmt.ENCODER_FILE, fmt.DECODER_FILE):
        m = onnx.load_from_string(graphs.models[file])
        inputs = {i.name for i in m.graph.input}
        assert EMBEDDING in inputs and POSITIONS in inputs, file  # both graphs read the one table
        assert not [t.name for t in m.graph.initializer if len(t.dims) >= 2]  # vectors only (ORT copies those)
        ops = {n.op_type for n in m.graph.node}
        assert "MatMulInteger" in ops, file
        big = [n for n in m.graph.node if n.op_type == "MatMul" and any(i in graphs.arrays for i in n.input)]
        assert not big, f"{file}: float MatMul on a weight"
    np.testing.assert_array_equal(graphs.arrays[POSITIONS], sinusoids(cfg))


def test_the_embedding_table_is_the_int8_grid_shifted_by_the_zero_point(tiny):
    _, _, cfg, records = tiny
    graphs = build_runtime_graphs(cfg, records)
    q, s = int8_matrix(records["shared.weight"])
    np.testing.assert_array_equal(graphs.arrays[EMBEDDING].astype(np.int16) - U8_ZERO, q.T)
    np.testing.assert_array_equal(graphs.arrays["shared.weight.scale"], s)


def test_u8_matches_pytorch_on_the_int8_grid(tiny):
    """Only the per-row activation quantization differs from the PyTorch model whose weights are q * scale."""
    exact, tok, cfg, records = tiny
    import torch

    with torch.no_grad():
        ref = first_steps(on_grid_model(records, cfg, 127), tok)
    got = first_steps(serve(cfg, records, tok), tok)
    assert np.abs(got - ref).max() < 0.1  # 8-bit activations: ~1% of a log-prob on average
    assert np.abs(got - ref).mean() < 0.015
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.95


def test_u8_greedy_is_token_identical_to_pytorch_on_the_grid(tiny):
    from compression.train.translator import TorchTranslator

    _, tok, cfg, records = tiny
    torch_ids = TorchTranslator(on_grid_model(records, cfg, 127), tok).translate_ids(tok.encode(SOURCES), SearchConfig())
    ort_ids = serve(cfg, records, tok).translate_ids(tok.encode(SOURCES), SearchConfig())
    same = sum(a == b for a, b in zip(torch_ids, ort_ids, strict=True))
    assert same >= len(SOURCES) - 1, (same, len(SOURCES))


def test_u8_is_batch_invariant(tiny):
    """One scale per row (token): a sentence's translation never depends on its batch-mates."""
    _, tok, cfg, records = tiny
    tr = serve(cfg, records, tok)
    together = tr.translate(SOURCES, batch_size=len(SOURCES))
    assert together == [tr.translate([s], batch_size=1)[0] for s in SOURCES]


def test_released_arrays_leave_the_sessions_answering_the_same(tiny):
    """ONNX Runtime copies declared initializers: once ours are dropped the sessions must not change."""
    _, tok, cfg, records = tiny
    kept = serve(cfg, records, tok, matmul="nbits8", release=False)
    dropped = serve(cfg, records, tok, matmul="nbits8")
    assert ort_copies_initializers()
    assert not dropped.weights.values and not dropped.weights.arrays  # nbits8 feeds nothing: all released
    assert kept.weights.arrays
    np.testing.assert_array_equal(first_steps(dropped, tok), first_steps(kept, tok))
    u8 = serve(cfg, records, tok)
    assert set(u8.weights.arrays) == set(u8.weights.fed)  # u8: only the fed arrays are held, once
    assert u8.weight_bytes == sum(a.nbytes for a in build_runtime_graphs(cfg, records).arrays.values())


def test_service_reports_weight_bytes_of_a_stored_variant(tiny):
    from service.artifacts import resident_weights

    _, tok, cfg, records = tiny
    tr = serve(cfg, records, tok)
    assert resident_weights(tr, 10**9) == tr.weight_bytes > 0
    assert resident_weights(object(), 1234) == 1234  # graph files: their weights as read


# -- Huffman: compact, vectorised decoding ----------------------------------------------------------
def test_huffman_decodes_to_a_compact_array_and_rejects_a_broken_stream():
    rng = np.random.default_rng(0)
    sym = rng.zipf(1.5, 20000).clip(max=200) - 1
    lengths, data, nbits = huffman.encode(sym, 200)
    out = huffman.decode(lengths, data, len(sym), nbits)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, sym)
    with pytest.raises(ValueError, match="corrupt"):
        huffman.decode(lengths, data, len(sym) - 1, nbits)  # symbols and bits disagree
    with pytest.raises(ValueError, match="corrupt"):
        huffman.decode(lengths, data[: len(data) // 2], len(sym), nbits)  # truncated


@pytest.mark.parametrize("share", [True, False])
def test_the_greedy_loop_of_a_stored_variant_gives_the_step_wise_tokens(tiny, share):
    """stored_loop: greedy in one run of graphs_greedy's Loop over the in-memory decoder step, its weights
    hoisted to the Loop graph's top level (fed ones bound, declared ones shared): the same tokens as the
    step-wise decoder for every batch shape; beam search stays step-wise."""
    _, tok, cfg, records = tiny
    opts = MemoryOptions(share=share)
    step = MemoryTranslator(build_runtime_graphs(cfg, records), tok, "tiny", ONE_THREAD, options=opts)
    loop = MemoryTranslator(build_runtime_graphs(cfg, records), tok, "tiny", SessionFactory(threads=1, stored_loop=True),
                            options=opts)
    assert step.loop_session is None and loop.loop_session is not None
    top = {i.name for i in loop.loop_session.get_inputs()}
    assert EMBEDDING in top and POSITIONS in top  # the one table, bound to every run
    texts = SOURCES * 3
    for batch in (1, 4, len(texts)):
        assert loop.translate(texts, batch_size=batch) == step.translate(texts, batch_size=batch)
    short = SearchConfig(beam=1, max_len=3)
    assert loop.translate(texts, short) == step.translate(texts, short)  # every sentence stops at its limit
    beam = SearchConfig(beam=3)
    assert loop.translate(SOURCES, beam) == step.translate(SOURCES, beam)
