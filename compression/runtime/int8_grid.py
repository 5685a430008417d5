"""Int8 grids for compressed weights (pure NumPy, no ONNX): one compact record -> int8 rows + per-row scales.

Every matrix the runtime serves on the CPU is ``q * scale[:, None]`` with ``q`` int8 and one float scale
per output row (``compression.runtime.graphs_int8`` lowers the graphs onto these):

- k-means / Deep Compression codebooks: q = round(centroid / scale) gathered per code, one scale per
  codebook, searched near max|centroid| / qmax for the least (usage-weighted) squared error: q * scale
  is every centroid on that row's int8 grid.
- binary, scaled sign: q = +-1, scale = alpha (exact); two-centroid: as a codebook of two values.
- sparse: zeros stay exactly 0 (q = 0); codes as a codebook, free values on the row's absmax grid.
- int8 records: their own q and scale; dense float matrices (the base): per-row absmax / qmax.

``qmax`` is 127 for the kernels that multiply exactly (MatMulNBits, MatMulInteger u8 x u8), 63 for the
u8 x s8 ones (see ``QMAX``).
"""

from __future__ import annotations

import numpy as np

from compression.runtime import compact

GRID_STEPS = np.linspace(0.5, 1.0, 6301)  # candidate values of max|row| / scale, as fractions of qmax
# u8 x s8 kernels on x86 without VNNI (AVX2: vpmaddubsw) add pairs of products in int16 and saturate
# when |q| > 63 (255 * 127 * 2 > 32767): DynamicQuantizeMatMul / MatMulInteger weights get 7 bits
QMAX = {"u8": 127, "nbits8": 127, "dqmm": 63, "integer": 63}  # u8: u8 x u8 (exact int32 sums)


def _grid(values: np.ndarray, weights: np.ndarray | None = None, search: bool = True,
          qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """values (G, K) float32 -> (int8 (G, K), scale (G,)) with q * scale as close to values as an int8 grid
    allows: the scale is searched (max|row| / m, m in [qmax / 2, qmax]) for the least squared error, weighted by
    ``weights`` (G, K) (how often each value is used); |q| <= ``qmax``. A codebook has few values, so a scale that puts
    them all near grid points exists (max|row| / 127 alone leaves each up to half a step off). Rows of
    free values (``search=False``) take max|row| / qmax."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    chunk = 256  # rows per search: (chunk, 6301) candidates at a time, not (G, 6301) (G = 4000 is 200 MB)
    if search and len(values) > chunk:
        parts = [_grid(values[i : i + chunk], weights[i : i + chunk], search, qmax) for i in range(0, len(values), chunk)]
        return np.concatenate([q for q, _ in parts]), np.concatenate([s for _, s in parts])
    top = np.abs(values).max(axis=1, keepdims=True)  # (G, 1)
    top = np.where(top > 0, top, 1.0)
    steps = top / (qmax * (GRID_STEPS if search else np.ones(1)))[None, :]  # (G, M) candidate scales
    err = np.zeros(steps.shape)
    for k in range(values.shape[1]):  # K is small (a codebook) or the row length (free values)
        v = values[:, k : k + 1]
        err += weights[:, k : k + 1] * (np.rint(v / steps) * steps - v) ** 2
    scale = steps[np.arange(len(steps)), err.argmin(axis=1)].astype(np.float32)
    q = np.clip(np.rint(values / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q, scale


def _counts(codes: np.ndarray, group: np.ndarray, groups: int, k: int) -> np.ndarray:
    """(groups, k) how many weights of each group use each code."""
    flat = (group[:, None] * k + codes).reshape(-1)
    return np.bincount(flat, minlength=groups * k).reshape(groups, k).astype(np.float64)


def int8_matrix(rec: dict, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D record -> (q int8 (rows, cols), scale float32 (rows,)) with q * scale[:, None] ~ the weight."""
    kind, shape = rec["kind"], [int(s) for s in rec["shape"]]
    if len(shape) != 2:
        raise ValueError(f"int8 weights are matrices; got shape {shape}")
    rows = shape[0]
    if kind in ("codebook", "binary"):
        book = np.asarray(rec["codebook"], dtype=np.float32)  # (G, K)
        group = np.arange(rows) // int(rec["rows_per_group"])  # (rows,) codebook of each row
        codes = np.asarray(rec["codes"]).astype(np.int64).reshape(shape)
        if kind == "binary" and rec.get("symmetric"):  # (-alpha, +alpha): q = -1 / +1, scale = alpha, exact
            qbook, gscale = np.array([[-1, 1]], dtype=np.int8).repeat(len(book), 0), book[:, 1]
        else:
            qbook, gscale = _grid(book, _counts(codes, group, len(book), book.shape[1]), qmax=qmax)
        return qbook[group[:, None], codes], gscale[group].astype(np.float32)
    if kind == "int8" and qmax == 127:
        return np.asarray(rec["q"], np.int8).reshape(shape), np.asarray(rec["scale"], np.float32)
    if kind == "sparse" and "codes" in rec:  # one codebook per tensor: its grid; pruned positions stay 0
        book, codes = np.asarray(rec["codebook"], np.float32).reshape(1, -1), np.asarray(rec["codes"]).astype(np.int64)
        qbook, gscale = _grid(book, np.bincount(codes, minlength=book.shape[1])[None, :], qmax=qmax)
        q = np.zeros(rows * shape[1], dtype=np.int8)
        q[np.asarray(rec["indices"], np.int64)] = qbook[0, codes]
        return q.reshape(shape), np.full(rows, gscale[0], np.float32)
    if kind in ("sparse", "dense", "int8"):  # free values: each row on its own grid (0 stays 0)
        return _grid(compact.dequantize(rec).reshape(rows, -1), search=False, qmax=qmax)
    raise ValueError(f"unknown record kind {kind!r}; known: {compact.KINDS}")


