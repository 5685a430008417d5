"""Binarisation: every weight becomes one of two values per tensor (or per row).

- ``sign``: scaled sign as in BinaryConnect / XNOR-Net / Word2Bits, w -> alpha * sign(w), alpha = mean |w|
  at the start and then trained (its gradient is the signed sum of its weights' gradients).
- ``two-centroid``: the study's variant, 1-bit k-means: two trained centroids, codes = nearest.
Both are retrained with the straight-through estimator on latent fp32 weights.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from . import Method, rows_per_group
from .kmeans import KMeans, KMeansConfig, grouped, key


def scaled_sign(w: torch.Tensor, rpg: int) -> torch.Tensor:
    """alpha * sign(w) with alpha = mean |w| per group of rows (pure function, post-training)."""
    wg = grouped(w, rpg)
    alpha = wg.abs().mean(1, keepdim=True)
    return torch.where(wg >= 0, alpha, -alpha).reshape(w.shape)


class BinarizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["binarize"] = "binarize"
    mode: Literal["sign", "two-centroid"] = "sign"
    granularity: Literal["tensor", "row", "group"] = "tensor"
    group_rows: int = Field(2, ge=1, description="rows sharing their two values when granularity='group'")
    lloyd_iters: int = Field(30, ge=0, description="two-centroid only: k-means iterations at the start")

    @property
    def bits(self) -> int:
        return 1

    @property
    def sparsity(self) -> None:
        return None


class Binarize(Method):
    def __init__(self, cfg: BinarizeConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        if cfg.mode == "two-centroid":
            self.kmeans = KMeans(KMeansConfig(bits=1, granularity=cfg.granularity, group_rows=cfg.group_rows,
                                              lloyd_iters=cfg.lloyd_iters), weights)
            return
        self.rpg = {n: rows_per_group(tuple(w.shape), cfg.granularity, cfg.group_rows) for n, w in weights.items()}
        self.scales = nn.ParameterDict({
            key(n): nn.Parameter(grouped(w.detach().float(), self.rpg[n]).abs().mean(1, keepdim=True))
            for n, w in weights.items()})  # (G, 1)

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        if self.cfg.mode == "two-centroid":
            return self.kmeans.fake(name, w)
        wg = grouped(w, self.rpg[name])
        sign = torch.where(wg.detach() >= 0, 1.0, -1.0).to(w.dtype)
        alpha = self.scales[key(name)]
        return (alpha * sign).reshape(w.shape) + (w - w.detach())

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        if self.cfg.mode == "two-centroid":
            recs = self.kmeans.records(weights)
            for r in recs.values():
                r.update(kind="binary", symmetric=False)
            return recs
        out = {}
        for n, w in weights.items():
            alpha = self.scales[key(n)].detach().float().cpu().numpy()
            alpha = alpha if alpha.shape[0] == 1 else alpha.astype(np.float16)  # per-row scales in fp16
            codes = (w >= 0).to(torch.uint8).cpu().numpy()
            out[n] = {"kind": "binary", "shape": list(w.shape), "bits": 1, "codes": codes,
                      "codebook": np.concatenate([-alpha, alpha], 1), "rows_per_group": self.rpg[n],
                      "symmetric": True}
        return out
