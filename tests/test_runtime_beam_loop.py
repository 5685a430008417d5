"""Beam search as one ONNX Loop run (compression/runtime/graphs_beam.py) against ``search.beam_search``.

Token identity, not closeness: the Loop runs the exported decoder step itself and reproduces the NumPy
search rule for rule (EOS only among the best K, per-sentence length limits, length penalty, the first best
on ties), so it must equal the step-wise runtime for fp32 and int8 and PyTorch for fp32. The tiny models get
an EOS bias so that hypotheses end by EOS at varied lengths, not only by the limit.
"""

from __future__ import annotations

import pytest

from compression.runtime.graphs_beam import build_beam
from compression.runtime.greedy import GreedyLoopTranslator
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory
from compression.runtime.translator import OnnxTranslator
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_model_and_tokenizer

CONFIGS = [SearchConfig(beam=k, max_len=40, max_len_a=0.5, max_len_b=2, length_penalty=lp)
           for k in (2, 3, 5) for lp in (1.0, 0.6)] + [SearchConfig(beam=4, max_len=6), SearchConfig(beam=2, max_len=1)]


@pytest.fixture(scope="module", params=[("fp32", 1.5), ("fp32", 2.0), ("int8", 1.5), ("int8", 2.0)],
                ids=lambda p: f"{p[0]}-eos{p[1]}")
def exported(request, tmp_path_factory):
    precision, bias = request.param
    return export_tiny(tmp_path_factory.mktemp(f"beam-eos{bias}"), f"tiny-{precision}", seed=2, precision=precision,
                       eos_bias=bias)


@pytest.fixture(scope="module")
def pair(exported):
    return GreedyLoopTranslator(exported), OnnxTranslator(exported)


def test_ends_vary(pair):
    """The fixture is what the other tests need: some hypotheses end by EOS early, some run to the limit."""
    loop, _ = pair
    ids = loop.tokenizer.encode(SOURCES)
    lengths = {len(h) for cfg in CONFIGS[:6] for h in loop.translate_ids(ids, cfg)}
    assert len(lengths) >= 3


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"k{c.beam}-lp{c.length_penalty}-max{c.max_len}")
def test_loop_equals_stepwise_beam_search(pair, cfg):
    loop, step = pair
    ids = loop.tokenizer.encode(SOURCES)
    for batch in (ids, ids[::-1], ids[2:5], ids[:1]):
        assert loop.translate_ids(batch, cfg) == step.translate_ids(batch, cfg)


def test_more_beams_than_half_the_vocabulary(pair):
    """K = 61 over 120 pieces: each row's best W = V (not 2K), and the sentence's best 2K of K * V."""
    loop, step = pair
    ids = loop.tokenizer.encode(SOURCES[:2])
    cfg = SearchConfig(beam=61, max_len=5)
    assert loop.translate_ids(ids, cfg) == step.translate_ids(ids, cfg)


def test_row_groups_give_the_same_hypotheses(exported, pair):
    _, step = pair
    grouped = GreedyLoopTranslator(exported, SessionFactory(threads=1, workers=3))
    ids = grouped.tokenizer.encode(SOURCES)
    cfg = CONFIGS[4]
    assert grouped.translate_ids(ids, cfg) == step.translate_ids(ids, cfg)


def test_equals_pytorch_beam_search(exported, pair):
    loop, _ = pair
    if loop.spec.precision != "fp32":
        pytest.skip("int8 has no PyTorch twin")
    from compression.train.translator import TorchTranslator

    bias = float(exported.parent.name.removeprefix("beam-eos")[:3])  # mktemp appends a counter
    model, tok = tiny_model_and_tokenizer(seed=2, eos_bias=bias)
    torch_tr = TorchTranslator(model, tok)
    ids = tok.encode(SOURCES)
    for cfg in CONFIGS[:4]:
        assert loop.translate_ids(ids, cfg) == torch_tr.translate_ids(ids, cfg)


def test_the_graph_is_one_loop_without_if(exported):
    def ops(graph) -> list[str]:
        found = []
        for node in graph.node:
            found.append(node.op_type)
            for attr in node.attribute:
                if attr.g.node:
                    found += ops(attr.g)
        return found

    found = ops(build_beam(exported).graph)
    assert "If" not in found and found.count("Loop") == 2 and "TopK" in found  # phases around tokens
