"""The baselines users compare against, post-training: fp16, and uniform symmetric int8 per output channel."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from . import Method, ste


def int8_per_row(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (row): w ~ q * scale[:, None], q in [-127, 127]."""
    scale = (w.detach().abs().amax(1) / 127.0).clamp_min(1e-12).half().float()  # scales are stored in fp16
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127)
    return q.to(torch.int8), scale


class Fp16Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["fp16"] = "fp16"

    @property
    def bits(self) -> int:
        return 16

    @property
    def sparsity(self) -> None:
        return None


class Int8Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["int8"] = "int8"

    @property
    def bits(self) -> int:
        return 8

    @property
    def sparsity(self) -> None:
        return None


class Fp16(Method):
    def __init__(self, cfg: Fp16Config, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        return ste(w, w.half().float())

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        return {n: {"kind": "dense", "shape": list(w.shape), "array": w.half().cpu().numpy()} for n, w in weights.items()}


class Int8(Method):
    def __init__(self, cfg: Int8Config, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        q, scale = int8_per_row(w)
        return ste(w, q.float() * scale[:, None])

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        out = {}
        for n, w in weights.items():
            q, scale = int8_per_row(w.float())
            out[n] = {"kind": "int8", "shape": list(w.shape), "q": q.cpu().numpy(),
                      "scale": scale.cpu().numpy().astype(np.float16)}
        return out
