"""Magnitude pruning: one-shot, or gradual with Zhu & Gupta's cubic schedule, layer-wise or global.

Sparsity follows s(p) = s_f + (s_i - s_f) (1 - (p - begin) / (end - begin))^3 over training progress p;
masks are recomputed from the magnitudes of the surviving weights (a pruned weight never returns),
pruned latent weights are zeroed after every optimiser step, so the masks hold throughout fine-tuning.
Exact counts: each tensor (layer-wise) or the whole model (global) keeps exactly round((1-s) n) weights.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import Method


def cubic_sparsity(progress: float, final: float, initial: float = 0.0, begin: float = 0.0, end: float = 1.0) -> float:
    if end <= begin:
        return final
    t = min(max((progress - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - t) ** 3


def keep_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask keeping exactly round((1 - sparsity) * n) largest scores (ties broken by topk)."""
    n = score.numel()
    keep = n - int(round(sparsity * n))
    mask = torch.zeros(n, dtype=torch.bool, device=score.device)
    if keep > 0:
        mask[score.flatten().topk(keep, sorted=False).indices] = True
    return mask.view(score.shape)


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str,
                    masks: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Masks at ``sparsity``; already-pruned weights (masks False) score -1 so they stay pruned."""
    scores = {n: w.detach().abs().float() for n, w in weights.items()}
    if masks is not None:
        scores = {n: torch.where(masks[n], s, -1.0) for n, s in scores.items()}
    if scope == "layer":
        return {n: keep_mask(s, sparsity) for n, s in scores.items()}
    flat = keep_mask(torch.cat([s.flatten() for s in scores.values()]), sparsity)
    out, i = {}, 0
    for n, s in scores.items():
        out[n] = flat[i : i + s.numel()].view(s.shape)
        i += s.numel()
    return out


class PruneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["prune"] = "prune"
    sparsity: float = Field(0.9, ge=0.0, lt=1.0, description="final fraction of zero weights")
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    scope: Literal["layer", "global"] = "layer"
    begin: float = Field(0.0, ge=0.0, le=1.0, description="progress at which pruning starts")
    end: float = Field(0.6, ge=0.0, le=1.0, description="progress at which the final sparsity is reached")
    update_every: int = Field(25, ge=1, description="steps between mask updates")
    index_bits: int = Field(5, ge=1, le=8, description="relative-offset symbols: gaps 0..2^b-2 plus one escape")
    value_dtype: Literal["float16", "float32"] = "float16"

    @model_validator(mode="after")
    def _check(self) -> PruneConfig:
        if self.initial_sparsity > self.sparsity:
            raise ValueError("initial_sparsity must not exceed sparsity")
        if self.end < self.begin:
            raise ValueError("end must not be before begin")
        return self

    @property
    def bits(self) -> None:
        return None


class Prune(Method):
    def __init__(self, cfg: PruneConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        self.final_from = cfg.end
        self.current = 0.0
        self.masks: dict[str, torch.Tensor] = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}

    def target(self, progress: float) -> float:
        c = self.cfg
        return cubic_sparsity(progress, c.sparsity, c.initial_sparsity, c.begin, c.end)

    @torch.no_grad()
    def update(self, weights: dict[str, torch.Tensor], progress: float, step: int = 0) -> None:
        s = self.target(progress)
        due = step % self.cfg.update_every == 0 or progress >= self.cfg.end
        if s > self.current and (due or s >= self.cfg.sparsity):
            self.masks = magnitude_masks(weights, s, self.cfg.scope, self.masks)
            self.current = s
            self.constrain(weights)

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        return w * self.masks[name]

    @torch.no_grad()
    def constrain(self, weights: dict[str, torch.Tensor]) -> None:
        for n, w in weights.items():
            w.mul_(self.masks[n])

    def extra_state(self) -> dict:
        return {"masks": {n: m.clone().cpu() for n, m in self.masks.items()}, "current": self.current}

    def load_extra_state(self, state: dict) -> None:
        device = next(iter(self.masks.values())).device
        self.masks = {n: m.to(device) for n, m in state["masks"].items()}
        self.current = state["current"]

    def survivors(self, name: str) -> np.ndarray:
        return self.masks[name].flatten().nonzero().squeeze(1).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        out = {}
        for n, w in weights.items():
            idx = self.survivors(n)
            values = w.flatten()[torch.from_numpy(idx).to(w.device)].cpu().numpy().astype(self.cfg.value_dtype)
            out[n] = {"kind": "sparse", "shape": list(w.shape), "indices": idx, "values": values,
                      "index_bits": self.cfg.index_bits}
        return out
