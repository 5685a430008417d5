"""The ONNX Loop greedy decoder (compression/onnx_greedy.py, greedy_runtime.py) against compression.runtime.search.greedy.

Token identity, not closeness: the Loop runs the exported decoder step itself, so for fp32 it must equal
PyTorch and the step-wise runtime, and for int8 (whose dynamic quantization scales depend on which
rows a step computes) the step-wise runtime, row shrinking included.
"""

from __future__ import annotations

import numpy as np
import pytest

from compression.runtime.greedy import GreedyLoopTranslator, strip_eos
from compression.runtime.search import SearchConfig, greedy, pad_batch
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


def test_beam_search_runs_the_stepwise_path(exported):
    loop, step = GreedyLoopTranslator(exported), OnnxTranslator(exported)
    ids = loop.tokenizer.encode(SOURCES[:4])
    cfg = SearchConfig(beam=3, max_len=20)
    assert loop.translate_ids(ids, cfg) == step.translate_ids(ids, cfg)


def test_strip_eos_cuts_at_the_first_eos():
    assert strip_eos(np.array([[5, 6, 2, 7], [2, 2, 2, 2], [4, 4, 4, 4]]), eos_id=2) == [[5, 6], [], [4, 4, 4, 4]]
