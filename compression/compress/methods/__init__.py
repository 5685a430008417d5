"""Compression methods, one module per method, all behind one small interface (``Method``).

A method sees the model's compressible weights (every 2-D weight: the tied embedding and every
Linear weight; ``final_logits_bias`` is a bias) and owns their compressed form:

    fake(name, w)      the weight the forward pass uses (quantised / pruned), with straight-through
                       gradients to the latent fp32 weight ``w`` and summed gradients to codebooks
    update(ws, p)      schedules driven by training progress p in [0, 1] (pruning masks, phase switches)
    constrain(ws)      after an optimiser step (pruned weights stay exactly zero)
    records(ws)        NumPy records of the compact format (see compression/runtime/compact.py)

Post-training compression is the same object with ``update(ws, 1.0)`` and no training steps.
"""

from __future__ import annotations

import torch
from torch import nn


def compressible(model: nn.Module) -> list[str]:
    """Names of the weights a method compresses: every 2-D weight except final_logits_bias."""
    return [n for n, p in model.named_parameters() if p.dim() == 2 and not n.endswith("bias")]


class Method(nn.Module):
    """Base class; trainable codebooks/scales are registered as parameters of the method."""

    #: progress from which the compressed form is final (models before it are not candidates)
    final_from: float = 0.0

    def update(self, weights: dict[str, torch.Tensor], progress: float, step: int = 0) -> None:
        pass

    def fake(self, name: str, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def constrain(self, weights: dict[str, torch.Tensor]) -> None:
        pass

    @torch.no_grad()
    def records(self, weights: dict[str, torch.Tensor]) -> dict[str, dict]:
        raise NotImplementedError

    def extra_state(self) -> dict:
        """State that is not a parameter (masks, phase), for snapshots; see load_extra_state."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


def ste(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward q, backward identity to w (the straight-through estimator)."""
    return w + (q - w).detach()


def rows_per_group(shape: tuple[int, ...], granularity: str, group_rows: int) -> int:
    rows = shape[0]
    if granularity == "tensor":
        return rows
    if granularity == "row":
        return 1
    if rows % group_rows:
        raise ValueError(f"a tensor of {rows} rows cannot be split into groups of {group_rows} rows; "
                         "pick a group_rows that divides every row count (e.g. 64) or use granularity='row'")
    return group_rows
