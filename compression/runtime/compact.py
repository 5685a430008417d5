"""The compact on-disk format of a compressed variant: one file, ``weights.tzc`` (NumPy only, no torch).

Layout: ``b"TZC1"``, a little-endian uint32 header length, the header (zlib-compressed JSON: one entry per
tensor listing its streams and their byte ranges), then the streams back to back. Streams are raw arrays
(little-endian), bit-packed codes (b bits per value, LSB first) or canonical Huffman streams
(compression/runtime/huffman.py). Reading gives back exactly the arrays that were written.

``read_tensors(dir)`` returns ``{parameter name: record}``; a record is a dict with ``kind`` and ``shape``
(the parameter's shape) and, by kind:

- ``dense``:    ``array`` float16/float32 ndarray of ``shape``. With ``grid`` (``grid_encode``'s dict: ``bits``,
                ``codes``, ``lo``, ``step``) the file holds only the codes: b bits per value on an affine grid of the
                tensor's range, and ``array`` is ``grid_decode`` of them (float32) on both sides.
- ``codebook``: ``codes`` uint8 ndarray of ``shape`` (unpacked), ``codebook`` float32/float16 (G, 2^bits),
                ``rows_per_group`` (rows sharing one codebook: all rows = per tensor, 1 = per row), ``bits``.
                Weight[r, c] = codebook[r // rows_per_group, codes[r, c]].
- ``binary``:   as ``codebook`` with ``bits`` = 1 (codes are 0/1, codebook (G, 2) = the two values), plus
                ``symmetric`` (True for scaled sign: codebook[g] = (-alpha_g, +alpha_g), only alpha is stored).
- ``int8``:     ``q`` int8 ndarray of ``shape``, ``scale`` float16 (rows,): weight = q * scale[:, None].
- ``sparse``:   ``indices`` int64 (n,) sorted flat (row-major) positions of the non-zeros, and either
                ``values`` float16/float32 (n,), or ``codes`` uint8 (n,) + ``codebook`` float32 (1, 2^bits)
                + ``bits``; every other position is 0. ``index_bits``: width of the relative-offset symbols.

``dequantize(record)`` gives the float32 weight exactly as every backend must compute it: codebook values
are cast to float32 and gathered; int8 is q (float32) times scale (float32).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from compression.runtime import huffman

MAGIC = b"TZC1"
WEIGHTS_FILE = "weights.tzc"
KINDS = ("dense", "codebook", "binary", "int8", "sparse")


class FormatError(ValueError):
    """The file is not a valid tzip compact file; re-run `python -m compression compress`."""


def grid_encode(a: np.ndarray, bits: int) -> dict:
    """Codes of ``a`` on the ``bits``-bit affine grid lo + k * step spanning its range (the nearest point each)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"grid bits must be 1-8, got {bits}")
    a = np.asarray(a, dtype=np.float32)
    lo, hi = np.float32(a.min()), np.float32(a.max())
    step = np.float32((hi - lo) / np.float32((1 << bits) - 1)) if hi > lo else np.float32(1)
    codes = np.clip(np.rint((a - lo) / step), 0, (1 << bits) - 1).astype(np.uint8)
    return {"bits": bits, "codes": codes, "lo": float(lo), "step": float(step)}


def grid_decode(grid: dict) -> np.ndarray:
    """The float32 values of a grid (exactly what every reader of the record gets)."""
    return np.float32(grid["lo"]) + grid["codes"].astype(np.float32) * np.float32(grid["step"])


# -- streams ---------------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def _add(self, data: bytes, desc: dict) -> dict:
        self.chunks.append(data)
        desc.update(o=self.offset, n=len(data))
        self.offset += len(data)
        return desc

    def raw(self, a: np.ndarray) -> dict:
        a = np.ascontiguousarray(a)
        return self._add(a.astype(a.dtype.newbyteorder("<")).tobytes(), {"e": "raw", "d": a.dtype.str.lstrip("<>|="),
                                                                           "sh": list(a.shape)})

    def bits(self, codes: np.ndarray, width: int) -> dict:
        flat = np.ascontiguousarray(codes).reshape(-1).astype(np.uint8)
        if flat.size and int(flat.max()) >= 1 << width:
            raise ValueError(f"codes do not fit in {width} bits")
        bits = (flat[:, None] >> np.arange(width, dtype=np.uint8)[None, :]) & 1  # (n, width) LSB first
        return self._add(np.packbits(bits.reshape(-1), bitorder="little").tobytes(),
                         {"e": "bits", "w": width, "c": int(flat.size)})

    def huff(self, symbols: np.ndarray, alphabet: int) -> dict:
        lengths, data, nbits = huffman.encode(symbols, alphabet)
        return self._add(lengths.tobytes() + data, {"e": "huff", "a": alphabet, "c": int(len(symbols)), "nb": nbits})


def _read_stream(blob: memoryview, d: dict) -> np.ndarray:
    data = blob[d["o"] : d["o"] + d["n"]]
    if len(data) != d["n"]:
        raise FormatError("the file is truncated")
    if d["e"] == "raw":
        return np.frombuffer(data, dtype=np.dtype(d["d"]).newbyteorder("<")).reshape(d["sh"]).astype(d["d"])
    if d["e"] == "bits":
        w, c = d["w"], d["c"]
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=c * w, bitorder="little").reshape(c, w)
        return (bits.astype(np.uint16) << np.arange(w, dtype=np.uint16)).sum(1).astype(np.uint8)
    if d["e"] == "huff":
        lengths = np.frombuffer(data[: d["a"]], dtype=np.uint8)
        return huffman.decode(lengths, bytes(data[d["a"] :]), d["c"], d["nb"])
    raise FormatError(f"unknown stream encoding {d['e']!r}")


# -- records ---------------------------------------------------------------------------------------


def _encode(rec: dict, w: _Writer) -> dict:
    kind = rec["kind"]
    entry: dict[str, Any] = {"k": kind, "s": list(rec["shape"])}
    if kind == "dense" and "grid" in rec:
        g = rec["grid"]
        entry["grid"] = {**w.bits(g["codes"], g["bits"]), "lo": g["lo"], "st": g["step"]}
    elif kind == "dense":
        entry["array"] = w.raw(rec["array"])
    elif kind in ("codebook", "binary"):
        entry.update(bits=rec["bits"], rpg=rec["rows_per_group"], codes=w.bits(rec["codes"], rec["bits"]))
        if rec.get("symmetric"):
            cb = np.asarray(rec["codebook"])
            if not np.array_equal(cb[:, :1], -cb[:, 1:]):
                raise ValueError("a symmetric binary codebook must be (-alpha, +alpha)")
            entry.update(sym=True, codebook=w.raw(cb[:, 1:]))
        else:
            entry["codebook"] = w.raw(rec["codebook"])
    elif kind == "int8":
        entry.update(q=w.raw(rec["q"].astype(np.int8)), scale=w.raw(rec["scale"]))
    elif kind == "sparse":
        b = rec["index_bits"]
        entry.update(ib=b, indices=w.huff(huffman.offsets_encode(rec["indices"], b), 1 << b))
        if "codes" in rec:
            entry.update(bits=rec["bits"], codes=w.huff(rec["codes"], 1 << rec["bits"]), codebook=w.raw(rec["codebook"]))
        else:
            entry["values"] = w.raw(rec["values"])
    else:
        raise ValueError(f"unknown record kind {kind!r}; known: {KINDS}")
    return entry


def _decode(entry: dict, blob: memoryview) -> dict:
    kind, shape = entry["k"], entry["s"]
    rec: dict[str, Any] = {"kind": kind, "shape": shape}
    if kind == "dense" and "grid" in entry:
        g = entry["grid"]
        rec["grid"] = {"bits": g["w"], "codes": _read_stream(blob, g).reshape(shape), "lo": g["lo"], "step": g["st"]}
        rec["array"] = grid_decode(rec["grid"])
    elif kind == "dense":
        rec["array"] = _read_stream(blob, entry["array"])
    elif kind in ("codebook", "binary"):
        rec.update(bits=entry["bits"], rows_per_group=entry["rpg"],
                   codes=_read_stream(blob, entry["codes"]).reshape(shape))
        cb = _read_stream(blob, entry["codebook"])
        if kind == "binary":
            rec["symmetric"] = bool(entry.get("sym"))
        rec["codebook"] = np.concatenate([-cb, cb], 1) if entry.get("sym") else cb
    elif kind == "int8":
        rec.update(q=_read_stream(blob, entry["q"]), scale=_read_stream(blob, entry["scale"]))
    elif kind == "sparse":
        rec["index_bits"] = entry["ib"]
        rec["indices"] = huffman.offsets_decode(_read_stream(blob, entry["indices"]), entry["ib"])
        if "codes" in entry:
            rec.update(bits=entry["bits"], codes=_read_stream(blob, entry["codes"]).astype(np.uint8),
                       codebook=_read_stream(blob, entry["codebook"]))
        else:
            rec["values"] = _read_stream(blob, entry["values"])
    else:
        raise FormatError(f"unknown record kind {kind!r}")
    return rec


def write_file(path: Path | str, records: dict[str, dict]) -> int:
    """Write every record to one compact file; returns its size in bytes."""
    w = _Writer()
    entries = [{"name": name, **_encode(rec, w)} for name, rec in records.items()]
    header = zlib.compress(json.dumps({"tensors": entries}, separators=(",", ":")).encode(), 9)
    data = MAGIC + struct.pack("<I", len(header)) + header + b"".join(w.chunks)
    Path(path).write_bytes(data)
    return len(data)


def read_file(path: Path | str) -> dict[str, dict]:
    raw = Path(path).read_bytes()
    if raw[:4] != MAGIC:
        raise FormatError(f"{path} is not a tzip compact file (magic {raw[:4]!r}); re-run the compress command")
    (n,) = struct.unpack("<I", raw[4:8])
    header = json.loads(zlib.decompress(raw[8 : 8 + n]))
    blob = memoryview(raw)[8 + n :]
    return {e["name"]: _decode(e, blob) for e in header["tensors"]}


def read_tensors(directory: Path | str) -> dict[str, dict]:
    """Records of a variant directory's ``weights.tzc`` (call compression.runtime.manifest.verify first)."""
    return read_file(Path(directory) / WEIGHTS_FILE)


def dequantize(rec: dict) -> np.ndarray:
    """The float32 weight a record stands for."""
    kind, shape = rec["kind"], tuple(rec["shape"])
    if kind == "dense":
        return rec["array"].astype(np.float32)
    if kind in ("codebook", "binary"):
        cb = rec["codebook"].astype(np.float32)
        codes = rec["codes"].reshape(shape[0] // rec["rows_per_group"], -1).astype(np.int64)
        return np.take_along_axis(cb, codes, 1).reshape(shape)
    if kind == "int8":
        return rec["q"].astype(np.float32) * rec["scale"].astype(np.float32)[:, None]
    if kind == "sparse":
        out = np.zeros(int(np.prod(shape)), dtype=np.float32)
        vals = rec["values"] if "values" in rec else rec["codebook"].reshape(-1)[rec["codes"].astype(np.int64)]
        out[rec["indices"]] = vals.astype(np.float32)
        return out.reshape(shape)
    raise FormatError(f"unknown record kind {kind!r}")
