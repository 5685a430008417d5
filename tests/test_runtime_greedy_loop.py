"""The ONNX Loop greedy decoder (compression/onnx_greedy.py, greedy_runtime.py) against compression.runtime.search.greedy.

Token identity, not closeness: the Loop runs the exported decoder step itself, so for fp32 it must equal
PyTorch and the step-wise runtime, and for int8 (whose dynamic quantization scales depend on which
rows a step computes) the step-wise runtime, row shrinking included.
"""

from __future__ import annotations

import numpy as np
import pytest

from compression.runtime.greedy import GreedyLoopTranslator, row_groups, strip_eos
from compression.runtime.search import SearchConfig, greedy, pad_batch
from compression.runtime.sessions import SessionFactory
from compression.runtime.translator import OnnxTranslator, OrtStepper
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_model_and_tokenizer

# mixed lengths, limits from 1 up: rows finish by EOS and by limit at different steps, so batches shrink
LIMITS = [1, 2, 3, 5, 8, 13, 21, 40]


@pytest.fixture(scope="module", params=["fp32", "int8"])
def exported(request, tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("loop"), f"tiny-{request.param}", seed=2, precision=request.param)


def stepwise_greedy(tr: OnnxTranslator, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
    stepper = OrtStepper(tr, pad_batch(src_ids, tr.spec.pad_id), 1)
    return greedy(stepper, limits, tr.spec.decoder_start_id, tr.spec.eos_id)


def test_loop_equals_search_greedy_with_per_sentence_limits(exported):
    loop, step = GreedyLoopTranslator(exported), OnnxTranslator(exported)
    ids = loop.tokenizer.encode(SOURCES)
    for batch, limits in ((ids, LIMITS), (ids[::-1], LIMITS), (ids[2:5], [40, 3, 40]), (ids[:1], [40]), (ids[5:6], [2])):
        assert loop.greedy_ids(batch, limits) == stepwise_greedy(step, batch, limits)


def test_loop_translate_equals_stepwise_and_pytorch(exported):
    loop, step = GreedyLoopTranslator(exported), OnnxTranslator(exported)
    cfg = SearchConfig(max_len=30)
    assert loop.translate(SOURCES, cfg, batch_size=3) == step.translate(SOURCES, cfg, batch_size=3)
    if loop.spec.precision == "fp32":
        from compression.train.translator import TorchTranslator

        model, tok = tiny_model_and_tokenizer(seed=2)
        ids = tok.encode(SOURCES)
        assert loop.translate_ids(ids, cfg) == TorchTranslator(model, tok).translate_ids(ids, cfg)


def test_beam_search_runs_the_beam_loop(exported):
    loop, step = GreedyLoopTranslator(exported), OnnxTranslator(exported)
    ids = loop.tokenizer.encode(SOURCES[:4])
    cfg = SearchConfig(beam=3, max_len=20)
    assert loop._beam_session is None  # built on the first beam request, not at load
    assert loop.translate_ids(ids, cfg) == step.translate_ids(ids, cfg)
    assert loop._beam_session is not None and loop._stepwise is None


def test_strip_eos_cuts_at_the_first_eos():
    assert strip_eos(np.array([[5, 6, 2, 7], [2, 2, 2, 2], [4, 4, 4, 4]]), eos_id=2) == [[5, 6], [], [4, 4, 4, 4]]


def test_the_loop_has_no_if_and_takes_argmax_of_the_logits(exported):
    from compression.runtime.graphs_greedy import build_greedy

    def ops(graph) -> list[str]:
        found = []
        for node in graph.node:
            found.append(node.op_type)
            for attr in node.attribute:
                if attr.g.node:
                    found += ops(attr.g)
        return found

    for shrink in (True, False):
        found = ops(build_greedy(exported, shrink).graph)
        assert "If" not in found and "LogSoftmax" not in found and "ArgMax" in found
        assert found.count("Loop") == (2 if shrink else 1)  # phases around tokens; a batch of one: tokens only


def test_row_groups_deal_rows_round_robin():
    assert row_groups(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert row_groups(2, 4) == [[0], [1]]
    assert row_groups(5, 1) == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_row_groups_give_the_tokens_of_one_call(exported, workers):
    one = GreedyLoopTranslator(exported, SessionFactory(threads=1))
    grouped = GreedyLoopTranslator(exported, SessionFactory(threads=1, workers=workers))
    ids = one.tokenizer.encode(SOURCES)
    for batch, limits in ((ids, LIMITS), (ids[::-1], LIMITS[::-1]), (ids[2:5], [40, 3, 40])):
        want = one.greedy_ids(batch, limits)
        assert grouped.greedy_ids(batch, limits) == want
        assert len(set(map(tuple, want))) > 1  # rows differ: a merge in the wrong order would show
    cfg = SearchConfig(max_len=30)
    assert grouped.translate(SOURCES, cfg, batch_size=4) == OnnxTranslator(exported).translate(SOURCES, cfg, batch_size=4)


def test_row_group_factories_hand_step_wise_translators_the_same_cores_as_intra_op_threads(exported):
    f = SessionFactory(threads=1, workers=4, spin=False)
    assert f.intra() == SessionFactory(threads=4, workers=1, spin=False)
    assert SessionFactory(threads=2).intra() == SessionFactory(threads=2)
    with pytest.raises(ValueError, match="workers"):
        SessionFactory(workers=0)
    loop = GreedyLoopTranslator(exported, f)
    assert loop.stepwise.translate_ids(loop.tokenizer.encode(SOURCES[:3]), SearchConfig(beam=2, max_len=10))
