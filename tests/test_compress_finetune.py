"""Retraining on a tiny model: the loss of a quantised model falls, pruning masks hold throughout."""

import copy
import random

import pytest
import torch

from compression.compress.finetune import FinetuneConfig, distillation_loss, finetune
from compression.compress.methods import compressible
from compression.compress.methods.kmeans import KMeans, KMeansConfig
from compression.compress.methods.prune import Prune, PruneConfig
from compression.train.data import load_split
from compression.train.trainer import collate, make_batches

CFG = dict(max_minutes=None, max_tokens=256, lr=3e-3, warmup_steps=0, train_limit=64, eval_limit=2,
           eval_points=[0.5], log_every=5, dropout=0.0, amp=False)


def fixed_batches(tok, model, n=2):
    pairs = load_split("train")[:64]
    cap = model.cfg.max_positions
    ids = [(s[:cap], t[:cap]) for s, t in zip(tok.encode([s for s, _ in pairs]), tok.encode([t for _, t in pairs]), strict=True)]
    return [collate(ids, b, model.cfg, "cpu") for b in make_batches(ids, 256, random.Random(0))[:n]]


def loss_of(student, method, names, teacher, batches, cfg):
    from torch.func import functional_call

    with torch.no_grad():
        total = 0.0
        for src, tin, tout in batches:
            fake = {n: method.fake(n, student.get_parameter(n)) for n in names}
            total += distillation_loss(functional_call(student, fake, (src, tin)), teacher(src, tin), tout, cfg)[0].item()
    return total / len(batches)


def test_short_finetuning_lowers_the_loss_of_a_quantized_model(tiny_model, tiny_tokenizer):
    teacher = tiny_model.eval()
    student = copy.deepcopy(teacher)
    names = compressible(student)
    method = KMeans(KMeansConfig(bits=1), {n: student.get_parameter(n).data for n in names})
    cfg = FinetuneConfig(max_steps=20, **CFG)
    batches = fixed_batches(tiny_tokenizer, student)
    before = loss_of(student, method, names, teacher, batches, cfg)
    history = finetune(student, method, names, cfg, tiny_tokenizer, teacher, torch.device("cpu"))
    student.eval()
    after = loss_of(student, method, names, teacher, batches, cfg)
    assert after < 0.9 * before, (before, after)
    assert history[-1]["selected"]["progress"] in (0.5, 1.0)  # chosen on val among final-form snapshots
    recs = method.records({n: student.get_parameter(n).data for n in names})
    assert all(r["codebook"].shape == (1, 2) for r in recs.values())


@pytest.mark.parametrize("scope", ["global"])  # layer-wise masks: tests/test_compress_methods.py
def test_pruning_masks_hold_throughout_finetuning(tiny_model, tiny_tokenizer, scope):
    teacher = tiny_model.eval()
    student = copy.deepcopy(teacher)
    names = compressible(student)
    weights = {n: student.get_parameter(n).data for n in names}
    method = Prune(PruneConfig(sparsity=0.7, scope=scope, end=0.4, update_every=2), weights)
    cfg = FinetuneConfig(max_steps=10, **CFG)
    finetune(student, method, names, cfg, tiny_tokenizer, teacher, torch.device("cpu"))
    total = sum(student.get_parameter(n).numel() for n in names)
    zeros = sum((student.get_parameter(n) == 0).sum().item() for n in names)
    assert zeros >= round(0.7 * total)
    for n in names:
        assert (student.get_parameter(n)[~method.masks[n]] == 0).all()
        if scope == "layer":
            assert (~method.masks[n]).sum().item() == round(0.7 * method.masks[n].numel())
    recs = method.records({n: student.get_parameter(n).data for n in names})
    assert sum(len(r["indices"]) for r in recs.values()) == total - round(0.7 * total) or scope == "layer"
