"""The Deep Compression pipeline (Han et al. 2016): prune, quantise the survivors, code the rest.

1. gradual magnitude pruning to the target sparsity (compression/compress/methods/prune.py), fine-tuning throughout;
2. at progress ``quantize_from`` k-means on the surviving weights only (linear init, Lloyd), then the
   centroids are trained (gradients summed per cluster) while masks hold;
3. on disk (compression/runtime/compact.py) survivors' positions become relative offsets and both the offset
   and the code streams are Huffman-coded (compression/runtime/huffman.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from . import Method
from .kmeans import assign, dequantize, grouped, key, linear_init, lloyd
from .prune import Prune, PruneConfig


class DeepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["deep"] = "deep"
    sparsity: float = Field(0.9, ge=0.0, lt=1.0)
    scope: Literal["layer", "global"] = "layer"
    prune_begin: float = Field(0.0, ge=0.0, le=1.0)
    prune_end: float = Field(0.45, ge=0.0, le=1.0)
    update_every: int = Field(25, ge=1)
    bits: int = Field(3, ge=1, le=8, description="bits per surviving weight (before Huffman coding)")
    quantize_from: float = Field(0.55, ge=0.0, le=1.0, description="progress at which quantisation starts")
    lloyd_iters: int = Field(30, ge=0)
    index_bits: int = Field(5, ge=1, le=8, description="relative-offset symbols: gaps 0..2^b-2 plus one escape")
    train: Literal["both", "centroids"] = "both"

    @model_validator(mode="after")
    def _check(self) -> DeepConfig:
        if self.quantize_from < self.prune_end:
            raise ValueError("quantize_from must not be before prune_end: quantise the final survivors")
        return self


class Deep(Method):
    def __init__(self, cfg: DeepConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        self.final_from = cfg.quantize_from
        self.prune = Prune(PruneConfig(sparsity=cfg.sparsity, scope=cfg.scope, begin=cfg.prune_begin,
                                       end=cfg.prune_end, update_every=cfg.update_every,
                                       index_bits=cfg.index_bits), weights)
        k = 2**cfg.bits
        self.codebooks = nn.ParameterDict({
            key(n): nn.Parameter(torch.zeros(1, k, device=w.device), requires_grad=True) for n, w in weights.items()})
        self.quantizing = False

    @torch.no_grad()
    def update(self, weights: dict[str, torch.Tensor], progress: float, step: int = 0) -> None:
        self.prune.update(weights, progress, step)
        if not self.quantizing and progress >= self.cfg.quantize_from:
            self.prune.update(weights, 1.0, step)  # post-training: straight to the final masks
            for n, w in weights.items():
                wg, m = grouped(w.float(), w.shape[0]), self.prune.masks[n].view(1, -1)
                self.codebooks[key(n)].copy_(lloyd(wg, linear_init(wg, 2**self.cfg.bits, m), self.cfg.lloyd_iters, m))
            self.quantizing = True

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        mask = self.prune.masks[name]
        if not self.quantizing:
            return w * mask
        cb = self.codebooks[key(name)]
        q = dequantize(assign(grouped(w, w.shape[0]), cb), cb).reshape(w.shape)
        if self.cfg.train == "both":
            q = q + (w - w.detach())
        return q * mask

    @torch.no_grad()
    def constrain(self, weights: dict[str, torch.Tensor]) -> None:
        self.prune.constrain(weights)

    def extra_state(self) -> dict:
        return {**self.prune.extra_state(), "quantizing": self.quantizing}

    def load_extra_state(self, state: dict) -> None:
        self.prune.load_extra_state(state)
        self.quantizing = state["quantizing"]

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        if not self.quantizing:
            raise RuntimeError("Deep Compression has not reached its quantisation phase; call update(weights, 1.0)")
        out = {}
        for n, w in weights.items():
            idx = self.prune.survivors(n)
            cb = self.codebooks[key(n)].detach().float()
            codes = assign(grouped(w.float(), w.shape[0]), cb).flatten()[torch.from_numpy(idx).to(w.device)]
            out[n] = {"kind": "sparse", "shape": list(w.shape), "indices": idx, "bits": self.cfg.bits,
                      "codes": codes.to(torch.uint8).cpu().numpy(), "codebook": cb.cpu().numpy(),
                      "index_bits": self.cfg.index_bits}
        return out
