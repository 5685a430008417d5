"""Sequence-level distillation on a tiny model: targets round-trip and are checked against their sources,
fine-tuning reads them (its loss on them falls), and beam search through step_topk is exact."""

import copy
import random

import pytest
import torch

from compression.compress.finetune import FinetuneConfig, distillation_loss, finetune
from compression.compress.methods import compressible
from compression.compress.methods.kmeans import KMeans, KMeansConfig
from compression.compress.seqkd import generate, read_targets, training_pairs, write_targets
from compression.runtime.search import SearchConfig
from compression.train.data import DataError, load_split
from compression.train.trainer import collate, make_batches
from compression.train.translator import TorchStepper, TorchTranslator

TARGET = "Ein Hund rennt durch das Wasser."


def sources(n):
    return [s for s, _ in load_split("train")[:n]]


def test_targets_round_trip_and_are_refused_for_other_sources(tmp_path, tiny_model, tiny_tokenizer):
    src = sources(6)
    hyps = generate(tiny_model, tiny_tokenizer, src, beam=2, device="cpu", batch_size=4)
    path = write_targets(tmp_path / "t.de.gz", src, hyps, {"beam": 2})
    assert read_targets(path, src) == hyps
    assert read_targets(path, src[:3]) == hyps[:3]  # a prefix of the sources (train_limit)
    with pytest.raises(DataError, match="other training sources"):
        read_targets(path, src[1:4])
    with pytest.raises(DataError, match="first 6"):
        read_targets(path, sources(7))
    with pytest.raises(DataError, match="python -m compression seqkd"):
        read_targets(tmp_path / "missing.de.gz", src)


def test_training_pairs_reads_the_targets(tmp_path):
    src = sources(5)
    hyps = [TARGET, "", TARGET, TARGET, TARGET]  # an empty translation is dropped
    path = write_targets(tmp_path / "t.de.gz", src, hyps, {})
    kd = training_pairs("seqkd", path, limit=5)
    assert kd == [(s, TARGET) for i, s in enumerate(src) if i != 1]
    both = training_pairs("both", path, limit=5)
    assert both[:5] == load_split("train")[:5] and both[5:] == kd
    assert training_pairs("reference", path, limit=5) == load_split("train")[:5]


def test_finetuning_on_seqkd_targets_lowers_their_loss(tmp_path, tiny_model, tiny_tokenizer):
    """The student learns the file's targets (one fixed sentence), not the references."""
    src = sources(64)
    path = write_targets(tmp_path / "t.de.gz", src, [TARGET] * 64, {})
    teacher = tiny_model.eval()
    student = copy.deepcopy(teacher)
    names = compressible(student)
    method = KMeans(KMeansConfig(bits=2), {n: student.get_parameter(n).data for n in names})
    cfg = FinetuneConfig(max_minutes=None, max_steps=25, max_tokens=256, lr=3e-3, warmup_steps=0, train_limit=64,
                         eval_limit=2, eval_points=[0.5], dropout=0.0, amp=False, kd_alpha=0.2,
                         targets="seqkd", seqkd_path=str(path))
    cap = student.cfg.max_positions
    ids = [(s[:cap], t[:cap]) for s, t in zip(tiny_tokenizer.encode(src), tiny_tokenizer.encode([TARGET] * 64), strict=True)]
    batches = [collate(ids, b, student.cfg, "cpu") for b in make_batches(ids, 256, random.Random(0))[:2]]

    def ce():
        from torch.func import functional_call

        with torch.no_grad():
            fake = {n: method.fake(n, student.get_parameter(n)) for n in names}
            return sum(distillation_loss(functional_call(student, fake, (s, i)), teacher(s, i), o, cfg)[2].item()
                       for s, i, o in batches) / len(batches)

    before = ce()
    history = finetune(student, method, names, cfg, tiny_tokenizer, teacher, torch.device("cpu"))
    student.eval()
    after = ce()
    assert after < 0.7 * before, (before, after)
    assert "selected" in history[-1]


def test_beam_search_through_step_topk_equals_the_full_scores(tiny_model, tiny_tokenizer, monkeypatch):
    src = sources(12)
    translator = TorchTranslator(tiny_model, tiny_tokenizer)
    for beam in (1, 2, 5):
        cfg = SearchConfig(beam=beam, max_len=20)
        fast = translator.translate(src, cfg, batch_size=5)
        with monkeypatch.context() as m:
            m.setattr(TorchStepper, "step_topk", None)
            m.setattr(TorchStepper, "step_argmax", None)
            full = translator.translate(src, cfg, batch_size=5)
        assert fast == full, beam
