"""k-means weight sharing (Han et al., Deep Compression): 1-8 bits, one codebook per tensor (default),
per row or per group of rows; linear centroid initialisation; trained quantisation.

Pure functions work on a grouped view ``wg`` of shape (G, n): group g's values share codebook g (G, k).
Training: the forward uses ``codebook[codes]``, so the gradient of a centroid is the sum of the
gradients of the weights in its cluster (Han et al. §3.3); the latent fp32 weights also get that
gradient straight through and codes are re-assigned to the nearest centroid at every step.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from . import Method, rows_per_group, ste

# -- pure tensor functions --------------------------------------------------------------------------


def grouped(w: torch.Tensor, rpg: int) -> torch.Tensor:
    """(R, C) -> (R // rpg, rpg * C): each row of the result shares one codebook."""
    return w.reshape(w.shape[0] // rpg, -1)


def linear_init(wg: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """k centroids evenly spaced between each group's min and max (Han et al.: best for large weights)."""
    if mask is not None:
        lo = torch.where(mask, wg, torch.full_like(wg, float("inf"))).amin(1)
        hi = torch.where(mask, wg, torch.full_like(wg, float("-inf"))).amax(1)
        empty = ~mask.any(1)
        lo, hi = torch.where(empty, 0.0, lo), torch.where(empty, 0.0, hi)
    else:
        lo, hi = wg.amin(1), wg.amax(1)
    t = torch.linspace(0, 1, k, device=wg.device, dtype=wg.dtype)
    return lo[:, None] + (hi - lo)[:, None] * t[None, :]  # (G, k)


def assign(wg: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid, (G, n) int64; the codebook need not be sorted."""
    cb, order = codebook.detach().sort(1)
    mid = ((cb[:, 1:] + cb[:, :-1]) / 2).contiguous()  # (G, k-1) decision boundaries
    pos = torch.searchsorted(mid, wg.detach().contiguous())  # (G, n) in [0, k-1]
    return order.gather(1, pos)


def lloyd(wg: torch.Tensor, codebook: torch.Tensor, iters: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Lloyd iterations from ``codebook``; a centroid left without weights keeps its value."""
    cb = codebook.detach().clone()
    wg = wg.detach()
    weight = torch.ones_like(wg) if mask is None else mask.to(wg.dtype)
    for _ in range(iters):
        codes = assign(wg, cb)
        sums = torch.zeros_like(cb).scatter_add_(1, codes, wg * weight)
        counts = torch.zeros_like(cb).scatter_add_(1, codes, weight)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), cb)
        if torch.equal(new, cb):
            break
        cb = new
    return cb


def dequantize(codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return codebook.gather(1, codes)  # (G, n); backward sums gradients per centroid


def kmeans_quantize(w: torch.Tensor, bits: int, rpg: int | None = None, iters: int = 20) -> torch.Tensor:
    """Post-training k-means of one tensor (convenience for tests and analysis)."""
    rpg = rpg or w.shape[0]
    wg = grouped(w, rpg)
    cb = lloyd(wg, linear_init(wg, 2**bits), iters)
    return dequantize(assign(wg, cb), cb).reshape(w.shape)


# -- method -----------------------------------------------------------------------------------------


class KMeansConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["kmeans"] = "kmeans"
    bits: int = Field(4, ge=1, le=8)
    granularity: Literal["tensor", "row", "group"] = "tensor"
    group_rows: int = Field(64, ge=1, description="rows sharing a codebook when granularity='group'")
    lloyd_iters: int = Field(30, ge=0, description="k-means iterations after the linear initialisation")
    train: Literal["both", "centroids", "ste"] = Field(
        "both", description="what fine-tuning moves: centroids (Han), latent weights (STE), or both")

    @property
    def sparsity(self) -> None:
        return None


def key(name: str) -> str:
    return name.replace(".", "__")  # nn.ParameterDict keys may not contain dots


class KMeans(Method):
    def __init__(self, cfg: KMeansConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        self.rpg = {n: rows_per_group(tuple(w.shape), cfg.granularity, cfg.group_rows) for n, w in weights.items()}
        self.codebooks = nn.ParameterDict()
        for n, w in weights.items():
            wg = grouped(w.detach().float(), self.rpg[n])
            cb = lloyd(wg, linear_init(wg, 2**cfg.bits), cfg.lloyd_iters)
            self.codebooks[key(n)] = nn.Parameter(cb, requires_grad=cfg.train != "ste")

    def codes(self, name: str, w: torch.Tensor) -> torch.Tensor:
        return assign(grouped(w, self.rpg[name]), self.codebooks[key(name)])

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        cb = self.codebooks[key(name)]
        q = dequantize(self.codes(name, w), cb).reshape(w.shape)
        if self.cfg.train == "centroids":
            return q
        if self.cfg.train == "ste":
            return ste(w, q)
        return q + (w - w.detach())  # gradient to the centroids (summed) and to the latent weight

    def codebook_array(self, name: str) -> np.ndarray:
        cb = self.codebooks[key(name)].detach().float().cpu().numpy()
        return cb if cb.shape[0] == 1 else cb.astype(np.float16)  # per-row/group codebooks in fp16

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        out = {}
        for n, w in weights.items():
            cb = self.codebook_array(n)
            # assign against the stored (possibly fp16-rounded) codebook so codes match what is saved
            codes = assign(grouped(w.float(), self.rpg[n]), torch.from_numpy(cb.astype(np.float32)).to(w.device))
            out[n] = {"kind": "codebook", "shape": list(w.shape), "bits": self.cfg.bits,
                      "codes": codes.reshape(w.shape).to(torch.uint8).cpu().numpy(),
                      "codebook": cb, "rows_per_group": self.rpg[n]}
        return out
