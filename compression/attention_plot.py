"""Attention heatmaps and sharpness figures with matplotlib's Agg canvas (no pyplot, no torch).

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot's global state, so the
service can render in worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .attention_maps import KIND_TITLES, KINDS

CMAP = "viridis"
AXIS_NAMES = {"encoder": ("source (query)", "source (key)"), "decoder": ("output (query)", "decoder input (key)"),
              "cross": ("output (query)", "source (key)")}


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def cell_inches(rows: int, cols: int) -> tuple[float, float]:
    """Panel size that keeps token labels readable: about a quarter inch per token, within bounds."""
    return float(np.clip(0.27 * cols + 1.4, 3.0, 14.0)), float(np.clip(0.27 * rows + 1.2, 2.6, 14.0))


def draw_map(ax, weights: np.ndarray, rows: Sequence[str], cols: Sequence[str], kind: str, title: str):
    """One heatmap on ``ax``: queries down, keys across, weights 0..1 on a shared colour scale."""
    im = ax.imshow(weights, cmap=CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(cols)))
    ax.set_yticks(range(len(rows)))
    ax.set_xticklabels(cols, rotation=90, fontsize=7)
    ax.set_yticklabels(rows, fontsize=7)
    ylabel, xlabel = AXIS_NAMES[kind]
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    return im


def heatmap_png(weights: np.ndarray, rows: Sequence[str], cols: Sequence[str], kind: str, title: str,
                dpi: int = 100) -> bytes:
    """A PNG of one attention map with token labels on both axes."""
    w, h = cell_inches(len(rows), len(cols))
    fig = Figure(figsize=(w + 0.8, h + 0.6), layout="constrained")
    ax = fig.add_subplot()
    im = draw_map(ax, weights, rows, cols, kind, title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    return to_png(fig, dpi)


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
