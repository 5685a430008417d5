"""Attention heatmaps with matplotlib's Agg canvas (no pyplot, no torch): the service's PNG answers and the
study's figures (compression.analysis.plots) draw with these.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot's global state, so the
service can render in worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
