"""The static-shape greedy step (graphs_static.py) and its translator (static_greedy.py), on the CPU.

CUDA graphs need a GPU (benchmarks/speed/static_identity.py measures them on the H200); what a CPU checks is
what makes them possible and correct: token identity with the ONNX Loop (itself identical to the step-wise
search), every carried value keeping its shape and buffer, buckets reused, no node that needs the host.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compression.runtime import onnx_format as fmt
from compression.runtime import static_greedy
from compression.runtime.graphs_static import build_static_step, carried
from compression.runtime.greedy import GreedyLoopTranslator
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory
from compression.runtime.static_greedy import StaticGreedyTranslator, ladder
from compression.runtime.translator import OnnxTranslator, open_translator
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_model_and_tokenizer

LIMITS = [1, 2, 3, 5, 8, 13, 21, 40]


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def exported(request, tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("static"), f"tiny-{request.param}", seed=2, precision=request.param)


def test_static_equals_the_loop_token_for_token(exported):
    loop, static = GreedyLoopTranslator(exported), StaticGreedyTranslator(exported)
    ids = loop.tokenizer.encode(SOURCES)
    for batch, limits in ((ids, LIMITS), (ids[::-1], LIMITS), (ids[2:5], [40, 3, 40]), (ids[:1], [40]), (ids[5:6], [2])):
        assert static.greedy_ids(batch, limits) == loop.greedy_ids(batch, limits)
    cfg = SearchConfig(max_len=30)
    assert static.translate(SOURCES, cfg, batch_size=3) == loop.translate(SOURCES, cfg, batch_size=3)


def test_a_model_that_stops_early_stops_each_row_at_its_eos(tmp_path):
    """A variant whose final bias favours EOS: rows end by EOS (not by limit), at different steps."""
    import torch

    from compression.export.writer import ExportConfig, export_model

    model, tok = tiny_model_and_tokenizer(seed=3)
    with torch.no_grad():
        model.final_logits_bias[..., model.cfg.eos_id] += 2.3  # rows end by EOS after 0, 11, 36 tokens, others by limit
    tok.save(tmp_path / "tok.model")
    d = tmp_path / "tiny-eos"
    meta = {"name": "tiny-eos", "method": "none", "bits": None, "sparsity": None, "bleu": 1.0, "bleu_greedy": 1.0,
            "base_model_bytes": None}
    export_model(model, tmp_path / "tok.model", d, meta, ExportConfig())
    loop, static = GreedyLoopTranslator(d), StaticGreedyTranslator(d)
    ids = loop.tokenizer.encode(SOURCES)
    got = static.greedy_ids(ids, [40] * len(ids))
    assert got == loop.greedy_ids(ids, [40] * len(ids))
    assert len({len(h) for h in got if 0 < len(h) < 40}) >= 2, [len(h) for h in got]  # EOS at different steps


def test_buckets_are_allocated_once_and_reused(exported):
    static = StaticGreedyTranslator(exported)
    ids = [x[:10] for x in static.tokenizer.encode(SOURCES)]  # sources of <= 16 tokens
    static.greedy_ids(ids[:3], [10, 10, 10])
    assert static.buckets == [(4, 16, 16)]
    before = dict(static._buckets)
    static.greedy_ids(ids[3:6], [12, 5, 9])  # 3 rows, short sources, <= 16 steps: the same bucket
    assert static.buckets == [(4, 16, 16)] and static._buckets[(4, 16, 16)] is before[(4, 16, 16)]
    static.greedy_ids(ids[:1], [17])
    assert static.buckets == [(1, 16, 32), (4, 16, 16)]


def test_every_carried_value_keeps_its_shape(exported):
    """What a CUDA graph replay needs: each output is the size of the input it feeds next step."""
    spec = fmt.GraphSpec.load(exported)
    step = build_static_step(onnx.load(str(exported / fmt.DECODER_FILE)), spec)
    sess = ort.InferenceSession(step.SerializeToString(), providers=["CPUExecutionProvider"])
    B, S, T, H, Dh = 3, 5, 8, spec.n_heads, spec.head_dim
    fdt = np.dtype(spec.float_dtype)
    feeds = {"tokens": np.zeros(B, np.int64), "pos": np.array([2], np.int64), "steps": np.arange(T, dtype=np.int64),
             "limits": np.full(B, 9, np.int64), "finished": np.zeros(B, bool), "history": np.zeros((B, T), np.int64),
             "src_mask": np.ones((B, 1, 1, S), bool)}
    for i in range(spec.decoder_layers):
        for n in (*fmt.cross_names(i),):
            feeds[n] = np.random.default_rng(i).standard_normal((B, H, S, Dh)).astype(fdt)
        for n in fmt.past_names(i):
            feeds[n] = np.random.default_rng(9 + i).standard_normal((B, H, T, Dh)).astype(fdt)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds), strict=True))
    for src, dst in carried(spec).items():
        assert got[dst].shape == feeds[src].shape and got[dst].dtype == feeds[src].dtype, (src, dst)
    assert got["next_pos"].tolist() == [3]
    # the cache changes at position 2 only; the history gets the new tokens in column 2
    for i in range(spec.decoder_layers):
        for past, present in zip(fmt.past_names(i), fmt.present_names(i), strict=True):
            changed = np.any(got[present] != feeds[past], axis=(0, 1, 3))
            assert changed.tolist() == [j == 2 for j in range(T)]
    assert (got["next_history"][:, 2] == got["next_tokens"]).all()
    assert (np.delete(got["next_history"], 2, axis=1) == 0).all()


def test_the_step_has_nothing_a_cuda_graph_cannot_hold(exported):
    """No shape-dependent nodes (Shape, Slice by a device value, Concat growing the cache), no control flow,
    no fp32 cast of fp16 logits."""
    spec = fmt.GraphSpec.load(exported)
    step = build_static_step(onnx.load(str(exported / fmt.DECODER_FILE)), spec)
    ops = [n.op_type for n in step.graph.node]
    for op in ("Shape", "Slice", "Loop", "If", "LogSoftmax", "NonZero"):
        assert op not in ops
    assert "reorder" not in {i.name for i in step.graph.input}
    concat_inputs = {i for n in step.graph.node if n.op_type == "Concat" for i in n.input}
    assert not concat_inputs & {p for i in range(spec.decoder_layers) for p in fmt.past_names(i)}
    if spec.precision == "fp16":  # the only Cast left is the folded sinusoid table's
        casts = [n for n in step.graph.node if n.op_type == "Cast"]
        assert all(c.attribute[0].i == onnx.TensorProto.FLOAT16 for c in casts)


def test_more_rows_than_the_largest_bucket_run_in_chunks(exported, monkeypatch):
    monkeypatch.setattr(static_greedy, "ROWS", (1, 2))
    static, loop = StaticGreedyTranslator(exported), GreedyLoopTranslator(exported)
    ids = [x[:10] for x in static.tokenizer.encode(SOURCES)]
    assert static.greedy_ids(ids[:5], LIMITS[:5]) == loop.greedy_ids(ids[:5], LIMITS[:5])
    assert static.buckets == [(1, 16, 16), (2, 16, 16)]


def test_beam_search_runs_the_beam_loop(exported):
    static, step = StaticGreedyTranslator(exported), OnnxTranslator(exported)
    ids = static.tokenizer.encode(SOURCES[:4])
    cfg = SearchConfig(beam=3, max_len=20)
    assert static.translate_ids(ids, cfg) == step.translate_ids(ids, cfg)
    assert static._beam_session is not None and static._stepwise is None


def test_ladder_and_the_cpu_default():
    assert [ladder(n, (1, 2, 4)) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    with pytest.raises(ValueError, match="exceeds the largest bucket 4"):
        ladder(5, (1, 2, 4))


def test_open_translator_uses_static_steps_only_under_cuda(exported):
    assert isinstance(open_translator(exported, SessionFactory()), GreedyLoopTranslator)
    st = StaticGreedyTranslator(exported)
    assert not st.cuda_graphs and st.cuda_graph_note == "no CUDA"


def test_a_capture_runs_alone_and_shared_gpu_work_runs_together():
    """sessions.GPU_WORK: shared holders overlap; an exclusive holder waits for them and keeps new ones out."""
    import threading
    import time

    from compression.runtime.sessions import GpuWork, gpu_shared

    work, events = GpuWork(), []

    def hold(kind: str, label: str, seconds: float) -> None:
        with work.exclusive() if kind == "x" else work.shared():
            events.append(f"+{label}")
            time.sleep(seconds)
            events.append(f"-{label}")

    a = threading.Thread(target=hold, args=("s", "a", 0.3))
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=hold, args=("s", "b", 0.1))  # overlaps a
    b.start()
    b.join()
    x = threading.Thread(target=hold, args=("x", "x", 0.1))  # waits for a
    x.start()
    time.sleep(0.05)
    c = threading.Thread(target=hold, args=("s", "c", 0.01))  # waits for x: writers first
    c.start()
    for t in (a, x, c):
        t.join()
    assert events == ["+a", "+b", "-b", "-a", "+x", "-x", "+c", "-c"]

    class Own:
        takes_gpu_work = True

        def go(self) -> int:
            return 1

    own = Own()
    assert gpu_shared(own.go) == own.go  # a translator that takes the lock itself is not wrapped
    assert gpu_shared(lambda: 2)() == 2


def test_each_serving_thread_captures_under_the_exclusive_lock(exported, monkeypatch):
    """ONNX Runtime keeps a session's CUDA graphs per calling thread: a second thread's first runs of a bucket
    capture again, so they must hold GPU_WORK exclusively too (the 500s of the 11-variant Ray run, 2 threads)."""
    import threading
    from contextlib import contextmanager

    taken: list[tuple[str, int]] = []

    class Recorder:
        @contextmanager
        def exclusive(self):
            taken.append(("x", threading.get_ident()))
            yield

        @contextmanager
        def shared(self):
            taken.append(("s", threading.get_ident()))
            yield

    monkeypatch.setattr(static_greedy, "GPU_WORK", Recorder())
    st = StaticGreedyTranslator(exported)
    st.cuda_graphs = True  # the CPU ignores graph ids; the locking is what is checked
    ids = [x[:10] for x in st.tokenizer.encode(SOURCES[:2])]

    def calls(n: int) -> None:
        for _ in range(n):
            st.greedy_ids(ids, [8, 8])

    calls(2)  # 8 steps: 4 runs of each parity, past CAPTURE_RUNS after the first call
    other = threading.Thread(target=calls, args=(2,))
    other.start()
    other.join()
    kinds = [k for k, _ in taken]
    assert kinds == ["x", "s", "x", "s"]
    assert taken[0][1] != taken[2][1]  # the second exclusive hold is the other thread's first call
