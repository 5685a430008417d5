"""The attention study's figures: a grid of maps across variants, and entropy per layer and head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from compression.runtime.attention_maps import KIND_TITLES, KINDS
from compression.runtime.heatmap import AXIS_NAMES, cell_inches, draw_map


def comparison_figure(panels: Sequence[tuple[str, str, np.ndarray, str]],
                      labels: dict[str, tuple[list[str], list[str]]], title: str) -> Figure:
    """A grid of maps, one column per variant and one row per kind: ``panels`` are (variant, kind, weights,
    panel title); ``labels[kind]`` = (row labels, column labels), the same for every variant (one target)."""
    variants = list(dict.fromkeys(p[0] for p in panels))
    kinds = list(dict.fromkeys(p[1] for p in panels))
    cw, ch = cell_inches(max(len(labels[k][0]) for k in kinds), max(len(labels[k][1]) for k in kinds))
    fig = Figure(figsize=(cw * len(variants) + 1.2, ch * len(kinds) + 0.8), layout="constrained")
    axes = fig.subplots(len(kinds), len(variants), squeeze=False)
    im = None
    for name, kind, weights, panel_title in panels:
        ax = axes[kinds.index(kind), variants.index(name)]
        rows, cols = labels[kind]
        im = draw_map(ax, weights, rows, cols, kind, panel_title)
        if variants.index(name):
            ax.set_yticklabels([])
            ax.set_ylabel("")
        else:
            ax.set_ylabel(f"{KIND_TITLES[kind]}\n{AXIS_NAMES[kind][0]}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(title, fontsize=10)
    return fig


def entropy_figure(results: dict[str, dict], target: str, title: str) -> Figure:
    """Mean entropy per layer and head, one panel per kind, one line per variant.

    ``results[variant][target][kind]`` is a (layers, heads) nested list."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, len(KINDS))
    markers = "osD^vP*Xh<>"
    for ax, kind in zip(axes, KINDS, strict=True):
        ticks: list[str] = []
        for i, (name, res) in enumerate(results.items()):
            grid = np.asarray(res[target][kind])  # (L, H)
            ticks = [f"L{layer}H{head}" for layer in range(grid.shape[0]) for head in range(grid.shape[1])]
            ax.plot(range(grid.size), grid.reshape(-1), marker=markers[i % len(markers)], ms=4, lw=1, label=name)
            for layer in range(1, grid.shape[0]):
                ax.axvline(layer * grid.shape[1] - 0.5, color="0.85", lw=0.8, zorder=0)
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels(ticks, rotation=90, fontsize=7)
        ax.set_title(KIND_TITLES[kind], fontsize=9)
        ax.set_ylabel("mean row entropy (nats)", fontsize=8)
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return fig
