"""Greedy search with the argmax taken by ONNX Runtime (as under CUDA): the same tokens as NumPy's argmax."""

from __future__ import annotations

import numpy as np

from compression.runtime.search import SearchConfig, pad_batch
from compression.runtime.translator import OnnxTranslator, OrtStepper
from tests.onnx_fixtures import SOURCES, tiny_export_fixture  # noqa: F401


def test_device_argmax_gives_the_same_translations(tiny_export, monkeypatch):
    tr = OnnxTranslator(tiny_export)
    ids = tr.tokenizer.encode(SOURCES)
    cfg = SearchConfig(beam=1)
    reference = tr.translate_ids(ids, cfg)  # CPU: log-probs to the host, NumPy argmax
    assert not tr.device_argmax
    calls = []
    run = tr.argmax.run_with_iobinding
    monkeypatch.setattr(tr.argmax, "run_with_iobinding", lambda b: calls.append(1) or run(b))
    monkeypatch.setattr(OrtStepper, "DEVICE_ARGMAX_ROWS", 1)
    tr.device_argmax = True
    assert tr.translate_ids(ids, cfg) == reference
    assert tr.translate_ids(ids[2:3], cfg) == tr.translate_ids(ids[2:3], SearchConfig(beam=1))
    assert calls  # the ONNX argmax really ran


def test_step_argmax_matches_step(tiny_export, monkeypatch):
    """Including the rows that finished (not computed): zeros in step's scores, 0 in step_argmax."""
    tr = OnnxTranslator(tiny_export)
    monkeypatch.setattr(OrtStepper, "DEVICE_ARGMAX_ROWS", 1)
    src = pad_batch(tr.tokenizer.encode(SOURCES[:4]), 0)
    a, b = OrtStepper(tr, src, 1), OrtStepper(tr, src, 1)
    tr.device_argmax = True
    last = np.zeros(4, dtype=np.int64)
    finished = np.zeros(4, dtype=bool)
    for t in range(4):
        want = a.step(last, None).argmax(-1)
        got = b.step_argmax(last)
        np.testing.assert_array_equal(got, want)
        if t == 1:
            finished[[0, 2]] = True  # two rows finish: the batch shrinks to the other two
        last = np.where(finished, tr.spec.eos_id, want).astype(np.int64)
