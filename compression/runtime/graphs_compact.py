"""Compressed weights inside ONNX graphs: codes, codebooks and sparse indices decoded by graph nodes.

A ``CompactWeights`` source turns each record of ``compression.runtime.compact.read_tensors`` into initializers
that stay as small as the compact checkpoint (packed codes, small codebooks, packed relative offsets)
plus a few nodes that rebuild the float weight exactly as ``compact.dequantize`` does (codebook values
cast to float32, then gathered). Every input of those nodes is constant, so ONNX Runtime folds them once
when the session starts: the file is compact, inference runs on dense weights at full speed.

Record kinds (see compact.py): dense, codebook / binary (codes of b bits, one codebook per group of
rows), int8 (per-row scales), sparse (sorted flat positions; values, or codes + a codebook).
Codes are stored LSB first in bytes of 1, 2, 4 or 8-bit fields (3 bits take 4-bit fields), unpacked
with BitShift + BitwiseAnd; sparse positions are stored as relative offsets with escape symbols
(``huffman.offsets_encode``), rebuilt with CumSum and written with ScatterElements.
No torch here.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from compression.runtime.graphs import ELEM_TYPE, Graph
from compression.runtime.huffman import offsets_encode

FIELD_WIDTHS = (1, 2, 4, 8)


def field_width(bits: int) -> int:
    for w in FIELD_WIDTHS:
        if bits <= w:
            return w
    raise ValueError(f"codes of {bits} bits do not fit a byte; at most 8 bits are supported")


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Flat codes < 2^bits -> uint8 bytes holding 8 // w codes each (w = field width), LSB first."""
    w = field_width(bits)
    flat = np.asarray(codes).reshape(-1).astype(np.uint8)
    if flat.size and int(flat.max()) >= 1 << bits:
        raise ValueError(f"codes do not fit in {bits} bits")
    per = 8 // w
    rows = np.concatenate([flat, np.zeros(-flat.size % per, dtype=np.uint8)]).reshape(-1, per)
    shifts = (np.arange(per) * w).astype(np.uint8)
    return np.bitwise_or.reduce(rows << shifts[None, :], axis=1).astype(np.uint8)


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_codes`` (NumPy; the graph does the same with BitShift and BitwiseAnd)."""
    w = field_width(bits)
    shifts = (np.arange(8 // w) * w).astype(np.uint8)
    return ((packed[:, None] >> shifts[None, :]) & ((1 << w) - 1)).reshape(-1)[:count]


def emit_codes(g: Graph, codes: np.ndarray, bits: int, label: str) -> str:
    """Packed codes as an initializer, and the nodes that unpack them to int64 (flat, ``codes.size``)."""
    w = field_width(bits)
    packed = g.const(pack_codes(codes, bits), f"{label}.codes{w}")
    if w == 8:
        return g.op("Cast", packed, to=TensorProto.INT64)
    shifts = g.const((np.arange(8 // w) * w).astype(np.uint8))
    fields = g.op("BitShift", g.op("Unsqueeze", packed, g.i64(1)), shifts, direction="RIGHT")  # (bytes, 8/w)
    fields = g.op("BitwiseAnd", fields, g.const(np.array((1 << w) - 1, dtype=np.uint8)))
    flat = g.op("Slice", g.op("Reshape", fields, g.i64(-1)), g.i64(0), g.i64(int(codes.size)), g.i64(0))
    return g.op("Cast", flat, to=TensorProto.INT64)


def to_graph_dtype(g: Graph, value: str, dtype: np.dtype) -> str:
    """Cast a stored float tensor (float16/float32) to float32 first, as ``compact.dequantize``, then to the graph's dtype."""
    if np.dtype(dtype) != np.float32:
        value = g.op("Cast", value, to=TensorProto.FLOAT)
    if g.dtype != np.float32:
        value = g.op("Cast", value, to=ELEM_TYPE[g.dtype])
    return value


class CompactWeights:
    """A ``WeightSource`` over compact records; each weight is decoded once per graph."""

    def __init__(self, records: dict[str, dict]):
        self.records = records

    def matrix(self, g: Graph, name: str, transpose: bool) -> str:
        w = self._weight(g, name)
        if not transpose:
            return w
        key = ("T", name)
        if key not in g.memo:
            g.memo[key] = g.op("Transpose", w, perm=[1, 0])
        return g.memo[key]

    def vector(self, g: Graph, name: str) -> str:
        return self._weight(g, name)

    def _weight(self, g: Graph, name: str) -> str:
        key = ("W", name)
        if key not in g.memo:
            if name not in self.records:
                raise KeyError(f"parameter {name!r} missing from the compact weights; re-run the compression")
            g.memo[key] = DECODERS[self.records[name]["kind"]](g, self.records[name], name)
        return g.memo[key]


def _dense(g: Graph, rec: dict, name: str) -> str:
    a = np.asarray(rec["array"])
    return to_graph_dtype(g, g.const(a, name), a.dtype)


def _codebook(g: Graph, rec: dict, name: str) -> str:
    shape = [int(s) for s in rec["shape"]]
    rows = shape[0]
    codebook = np.asarray(rec["codebook"])  # (G, K)
    G, K = codebook.shape
    codes = g.op("Reshape", emit_codes(g, rec["codes"], rec["bits"], name), g.i64(rows, -1))  # (rows, cols)
    if G > 1:  # row r uses codebook r // rows_per_group: offset its codes into the flattened codebooks
        row = g.op("Range", g.const(np.array(0, np.int64)), g.const(np.array(rows, np.int64)), g.const(np.array(1, np.int64)))
        group = g.op("Div", row, g.const(np.array(rec["rows_per_group"], np.int64)))
        codes = g.op("Add", codes, g.op("Unsqueeze", g.op("Mul", group, g.const(np.array(K, np.int64))), g.i64(1)))
    table = to_graph_dtype(g, g.const(codebook.reshape(-1), f"{name}.codebook"), codebook.dtype)
    return g.op("Reshape", g.op("Gather", table, codes), g.i64(*shape))


def _int8(g: Graph, rec: dict, name: str) -> str:
    shape = [int(s) for s in rec["shape"]]
    q = g.op("Cast", g.const(np.asarray(rec["q"], np.int8), f"{name}.q"), to=TensorProto.FLOAT)
    scale = np.asarray(rec["scale"])
    s = g.op("Cast", g.const(scale, f"{name}.scale"), to=TensorProto.FLOAT) if scale.dtype != np.float32 \
        else g.const(scale, f"{name}.scale")
    w = g.op("Mul", g.op("Reshape", q, g.i64(shape[0], -1)), g.op("Unsqueeze", s, g.i64(1)))
    w = g.op("Reshape", w, g.i64(*shape))
    return to_graph_dtype(g, w, np.dtype(np.float32))


def _sparse(g: Graph, rec: dict, name: str) -> str:
    shape = [int(s) for s in rec["shape"]]
    n = int(np.prod(shape))
    b = int(rec["index_bits"])
    esc = (1 << b) - 1
    symbols = offsets_encode(np.asarray(rec["indices"], np.int64), b)
    real = symbols != esc  # escape symbols skip positions without a weight; their values are dummies
    sym = emit_codes(g, symbols, b, f"{name}.offsets")
    is_esc = g.op("Equal", sym, g.const(np.array(esc, np.int64)))
    advance = g.op("Where", is_esc, g.const(np.array(esc, np.int64)), g.op("Add", sym, g.const(np.array(1, np.int64))))
    pos = g.op("Sub", g.op("CumSum", advance, g.const(np.array(0, np.int64))), g.const(np.array(1, np.int64)))
    target = g.op("Where", is_esc, g.const(np.array(n, np.int64)), pos)  # escapes write to a spare slot n
    if "codes" in rec:
        codes = np.zeros(symbols.size, np.uint8)
        codes[real] = rec["codes"]
        cb = np.asarray(rec["codebook"])
        table = g.const(cb.reshape(-1).astype(np.float32), f"{name}.codebook")
        values = g.op("Gather", table, emit_codes(g, codes, rec["bits"], name))
    else:
        v = np.asarray(rec["values"])
        full = np.zeros(symbols.size, v.dtype)
        full[real] = v
        values = g.const(full, f"{name}.values")
        if v.dtype != np.float32:
            values = g.op("Cast", values, to=TensorProto.FLOAT)
    zeros = g.op("ConstantOfShape", g.i64(n + 1))  # float32 zeros
    dense = g.op("ScatterElements", zeros, target, values, axis=0)
    dense = g.op("Reshape", g.op("Slice", dense, g.i64(0), g.i64(n), g.i64(0)), g.i64(*shape))
    return to_graph_dtype(g, dense, np.dtype(np.float32))


DECODERS = {"dense": _dense, "codebook": _codebook, "binary": _codebook, "int8": _int8, "sparse": _sparse}
