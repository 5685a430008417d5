"""Retraining a compressed model: straight-through fine-tuning with knowledge distillation.

The forward pass runs the model with the method's fake-compressed weights (``torch.func.functional_call``),
the loss mixes label-smoothed cross-entropy with the KL divergence to the base model's logits (Hinton et
al.). The targets are the references, or the base's own beam translations of the training sources
(sequence-level distillation, Kim & Rush 2016; compression/compress/seqkd.py), or both; the logit term
then distils the teacher on those targets (their "word-level + sequence-level" combination). Gradients
flow straight through to the latent fp32 weights and, summed per cluster, to the codebooks. Schedules
run on *progress* in [0, 1] (steps or wall-clock, whichever runs out first), so the same config fits a
6-minute GPU budget or a 20-second smoke test. The final weights are chosen on
validation BLEU (greedy) among snapshots taken once the compressed form is final; never on test.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.func import functional_call
from tqdm import tqdm

from compression.compress.methods import Method
from compression.compress.seqkd import DEFAULT_TARGETS, training_pairs
from compression.runtime.search import SearchConfig
from compression.runtime.tokenizer import Tokenizer
from compression.train.data import load_split
from compression.train.evaluate import bleu_chrf
from compression.train.model import Attention, Transformer
from compression.train.trainer import collate, make_batches, seed_everything
from compression.train.translator import TorchTranslator

log = logging.getLogger("tzip.finetune")


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_minutes: float | None = Field(6.0, gt=0, description="wall-clock budget including validation")
    max_steps: int | None = Field(None, ge=1)
    max_tokens: int = Field(4096, ge=16, description="target tokens per batch (~131 batches per epoch)")
    lr: float = Field(3e-4, gt=0, description="peak learning rate of the latent weights")
    codebook_lr: float | None = Field(None, gt=0, description="centroids/scales (default: lr)")
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="cosine decay to this fraction of lr")
    weight_decay: float = Field(0.0, ge=0)
    kd_alpha: float = Field(0.8, ge=0, le=1, description="weight of the distillation term (1 - it: CE)")
    kd_temperature: float = Field(1.0, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    dropout: float | None = Field(0.1, ge=0, lt=1, description="override of the model's dropout while retraining")
    clip_norm: float = Field(1.0, gt=0)
    eval_points: list[float] = Field([0.7, 0.8, 0.9], description="progress at which val BLEU is measured (1.0 always)")
    eval_at_start: bool = Field(False, description="also consider the post-training model (progress 0)")
    eval_limit: int | None = Field(None, ge=1, description="validate on the first N val pairs only (smoke tests)")
    train_limit: int | None = Field(None, ge=1)
    targets: Literal["reference", "seqkd", "both"] = Field(
        "reference", description="train on the references, on the base's translations (seq-KD), or on both")
    seqkd_path: str = Field(DEFAULT_TARGETS, description="seq-KD targets (python -m compression seqkd), from the repo root")
    amp: bool = True
    seed: int = 1
    log_every: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.max_minutes is None and self.max_steps is None:
            raise ValueError("set max_minutes or max_steps (or both): fine-tuning needs an end")
        if any(not 0 <= p <= 1 for p in self.eval_points):
            raise ValueError("eval_points are progress fractions in [0, 1]")
        return self


def lr_factor(step: int, progress: float, cfg: FinetuneConfig) -> float:
    warm = min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      cfg: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (loss, kd, ce) over real target positions; logits (B, T, V), labels (B, T) with -100 at pads."""
    keep = labels != -100
    s, t = logits.float()[keep], teacher.float()[keep]  # (N, V)
    ce = F.cross_entropy(s, labels[keep], label_smoothing=cfg.label_smoothing)
    if cfg.kd_alpha == 0:
        return ce, torch.zeros_like(ce), ce
    T = cfg.kd_temperature
    kd = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T
    return cfg.kd_alpha * kd + (1 - cfg.kd_alpha) * ce, kd, ce


def set_dropout(model: Transformer, p: float) -> None:
    model.cfg.dropout = p  # the layers share this config object
    model.cfg.activation_dropout = min(model.cfg.activation_dropout, p)
    for m in model.modules():
        if isinstance(m, Attention):
            m.dropout = min(m.dropout, p)


@torch.no_grad()
def materialize(model: Transformer, method: Method, names: list[str]) -> Transformer:
    """A copy of ``model`` holding the compressed weights (for validation)."""
    out = copy.deepcopy(model).eval()
    for n in names:
        out.get_parameter(n).copy_(method.fake(n, model.get_parameter(n)))
    return out


def val_bleu(model: Transformer, method: Method, names: list[str], tok: Tokenizer, val, device) -> float:
    m = materialize(model, method, names)
    search = SearchConfig(beam=1, max_len=min(SearchConfig.max_len, m.cfg.max_positions - 1))
    hyps = TorchTranslator(m, tok, device).translate([s for s, _ in val], search, batch_size=128)
    return bleu_chrf(hyps, [t for _, t in val])["bleu"]


def snapshot(model: Transformer, method: Method) -> dict:
    return {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "method": {k: v.detach().cpu().clone() for k, v in method.state_dict().items()},
            "extra": copy.deepcopy(method.extra_state())}


def restore(model: Transformer, method: Method, snap: dict) -> None:
    model.load_state_dict(snap["model"])
    method.load_state_dict(snap["method"])
    method.load_extra_state(snap["extra"])


def finetune(model: Transformer, method: Method, names: list[str], cfg: FinetuneConfig, tok: Tokenizer,
             teacher: Transformer, device: torch.device) -> list[dict]:
    """Retrain ``model`` in place under ``method``; leaves the val-selected state in model and method."""
    seed_everything(cfg.seed)
    t0 = time.time()
    mcfg = model.cfg
    pairs = training_pairs(cfg.targets, cfg.seqkd_path, cfg.train_limit)
    val = load_split("val")[: cfg.eval_limit]
    log.info("training on %d pairs (targets: %s)", len(pairs), cfg.targets)
    src_ids, tgt_ids = tok.encode([s for s, _ in pairs]), tok.encode([t for _, t in pairs])
    pairs = [(s[: mcfg.max_positions], t[: mcfg.max_positions]) for s, t in zip(src_ids, tgt_ids, strict=True)]
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    model.train()
    teacher.eval()
    method_params = [p for p in method.parameters() if p.requires_grad]
    groups = [{"params": list(model.parameters()), "lr": cfg.lr, "base": cfg.lr}]
    if method_params:
        groups.append({"params": method_params, "lr": cfg.codebook_lr or cfg.lr, "base": cfg.codebook_lr or cfg.lr})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-9, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    points = sorted({p for p in cfg.eval_points if method.final_from <= p < 1.0})
    rng = random.Random(cfg.seed)
    history: list[dict] = []
    best: tuple[float, dict | None, float] = (-1.0, None, 0.0)

    def progress_now(step: int) -> float:
        p = [step / cfg.max_steps] if cfg.max_steps else []
        return max(p + ([(time.time() - t0) / budget] if budget else []))

    def consider(progress: float) -> None:
        nonlocal best
        bleu = val_bleu(model, method, names, tok, val, device)
        model.train()
        entry = {"step": step, "progress": round(progress, 4), "val_bleu": bleu, "minutes": round((time.time() - t0) / 60, 2)}
        history.append(entry)
        log.info(json.dumps(entry))
        if bleu > best[0]:
            best = (bleu, snapshot(model, method), progress)

    weights = {n: model.get_parameter(n) for n in names}
    step, progress = 0, 0.0
    if cfg.eval_at_start and method.final_from == 0:
        method.update({n: w.data for n, w in weights.items()}, method.final_from, 0)
        consider(0.0)
    bar = tqdm(desc="retraining", unit="step", mininterval=10, leave=False)
    running = {"loss": 0.0, "kd": 0.0, "ce": 0.0, "n": 0}
    while progress < 1.0:
        for idx in make_batches(pairs, cfg.max_tokens, rng):
            progress = progress_now(step)
            if progress >= 1.0:
                break
            if points and progress >= points[0]:
                consider(points.pop(0))
            method.update({n: w.data for n, w in weights.items()}, progress, step)
            src, tin, tout = collate(pairs, idx, mcfg, device)
            factor = lr_factor(step + 1, progress, cfg)
            for g in opt.param_groups:
                g["lr"] = g["base"] * factor
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                with torch.no_grad():
                    t_logits = teacher(src, tin) if cfg.kd_alpha > 0 else None
                fake = {n: method.fake(n, w) for n, w in weights.items()}
                logits = functional_call(model, fake, (src, tin))
            loss, kd, ce = distillation_loss(logits, t_logits, tout, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.clip_norm)
            opt.step()
            method.constrain({n: w.data for n, w in weights.items()})
            step += 1
            for k, v in (("loss", loss), ("kd", kd), ("ce", ce)):
                running[k] += v.detach()  # no .item() here: it would wait for the GPU every step
            running["n"] += 1
            bar.update()
            if step % cfg.log_every == 0:
                entry = {"step": step, "progress": round(progress, 4), "lr": round(opt.param_groups[0]["lr"], 7),
                         **{k: round(float(running[k]) / running["n"], 4) for k in ("loss", "kd", "ce")}}
                history.append(entry)
                log.info(json.dumps(entry))
                running = {"loss": 0.0, "kd": 0.0, "ce": 0.0, "n": 0}
    bar.close()
    method.update({n: w.data for n, w in weights.items()}, 1.0, step)  # the final masks/phase, if not reached
    consider(1.0)
    restore(model, method, best[1])
    history.append({"selected": {"progress": best[2], "val_bleu": best[0]}, "steps": step,
                    "minutes": round((time.time() - t0) / 60, 2)})
    log.info("selected the snapshot at progress %.3f (val BLEU %.2f) after %d steps", best[2], best[0], step)
    return history
