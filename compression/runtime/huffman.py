"""Canonical Huffman coding of small-alphabet symbol streams (NumPy, no torch).

A stream is stored as its code lengths (one byte per symbol of the alphabet; 0 = unused) and the
bit string, most significant bit first. Codes are canonical, so the lengths alone rebuild the code.
Encoding and table-driven decoding are vectorised (decoding hops codeword to codeword by pointer doubling).
"""

from __future__ import annotations

import heapq

import numpy as np

MAX_LEN = 24  # longest codeword; keeps the decoding table at most 2^24 entries


def code_lengths(counts: np.ndarray, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code length per symbol (0 for symbols that never occur), at most ``max_len`` bits."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    c = counts.copy()
    while True:
        heap = [(int(c[s]), i, [int(s)]) for i, s in enumerate(used)]
        heapq.heapify(heap)
        depth = np.zeros(len(counts), dtype=np.int64)
        tie = len(heap)
        while len(heap) > 1:
            a, _, sa = heapq.heappop(heap)
            b, _, sb = heapq.heappop(heap)
            depth[sa + sb] += 1
            heapq.heappush(heap, (a + b, tie, sa + sb))
            tie += 1
        if depth.max() <= max_len:
            lengths[used] = depth[used]
            return lengths
        c[used] = np.maximum(c[used] // 2, 1)  # flatten the distribution until the longest code fits


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Codewords (as integers) from code lengths: shorter codes first, then by symbol."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        prev = int(lengths[s])
        code += 1
    return codes


def encode(symbols: np.ndarray, alphabet: int) -> tuple[np.ndarray, bytes, int]:
    """-> (code lengths (alphabet,) uint8, packed bits, number of bits)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    if symbols.size == 0:
        return lengths, b"", 0
    codes = canonical_codes(lengths)
    ln, cw = lengths.astype(np.int64)[symbols], codes[symbols]
    width = int(ln.max())
    j = np.arange(width)[None, :]
    bits = (cw[:, None] >> np.maximum(ln[:, None] - 1 - j, 0)) & 1  # (n, width), valid where j < len
    bits = bits[j < ln[:, None]]
    return lengths, np.packbits(bits.astype(np.uint8)).tobytes(), int(bits.size)


def decode(lengths: np.ndarray, data: bytes, n: int, nbits: int) -> np.ndarray:
    """Inverse of ``encode``: the first ``n`` symbols of the stream, in the smallest unsigned dtype that holds
    the alphabet. Vectorised: the codeword starts are the orbit of bit 0 under "next start = this start +
    the length of the code read here", found by pointer doubling (log2(n) passes over compact arrays); no
    Python list of n ints is ever built, so decoding leaves no resident garbage behind."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out_dtype = np.min_scalar_type(max(len(lengths) - 1, 0))
    if n == 0:
        return np.zeros(0, dtype=out_dtype)
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    sym_of = np.zeros(1 << width, dtype=out_dtype)  # table: next `width` bits -> symbol, code length
    len_of = np.zeros(1 << width, dtype=np.int32)
    for s in np.flatnonzero(lengths):
        lo = int(codes[s]) << (width - int(lengths[s]))
        hi = (int(codes[s]) + 1) << (width - int(lengths[s]))
        sym_of[lo:hi], len_of[lo:hi] = s, lengths[s]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits]
    if bits.size < nbits:
        raise ValueError(f"Huffman stream holds {bits.size} bits, {nbits} expected: the file is corrupt")
    bits = np.concatenate([bits, np.zeros(width, dtype=np.uint8)])
    window = np.zeros(nbits, dtype=np.int32)  # value of the `width` bits starting at every position
    for j in range(width):
        window = (window << 1) | bits[j : j + nbits]
    del bits
    nxt = np.minimum(np.arange(nbits, dtype=np.int32) + len_of[window], nbits)  # (nbits,) next codeword start
    nxt = np.concatenate([nxt, np.array([nbits], dtype=np.int32)])  # nbits: past the end, stays there
    starts, jump = np.zeros(1, dtype=np.int32), nxt  # starts of symbols [0, k); jump = k steps ahead
    while starts.size < n:
        starts = np.concatenate([starts, jump[starts]])
        if starts.size < n:
            jump = jump[jump]
    starts = starts[:n]
    end = int(nxt[starts[-1]])
    if end != nbits or int(starts[-1]) >= nbits or np.any(len_of[window[starts]] == 0):
        raise ValueError(f"Huffman stream holds {nbits} bits but {n} symbols used {end}: the file is corrupt")
    return sym_of[window[starts]]


# -- relative offsets (Han et al. §3: store the gap to the previous non-zero, not its position) ------


def offsets_encode(indices: np.ndarray, index_bits: int) -> np.ndarray:
    """Sorted flat positions -> gap symbols in [0, 2^b - 1]; symbol 2^b - 1 means 'skip that many, no weight'."""
    esc = (1 << index_bits) - 1
    gaps = np.diff(np.concatenate([[-1], np.asarray(indices, dtype=np.int64)])) - 1
    if gaps.size and gaps.min() < 0:
        raise ValueError("indices must be strictly increasing")
    n_esc = gaps // esc
    out = np.full(int(gaps.size + n_esc.sum()), esc, dtype=np.int64)
    out[np.cumsum(n_esc + 1) - 1] = gaps % esc
    return out


def offsets_decode(symbols: np.ndarray, index_bits: int) -> np.ndarray:
    esc = (1 << index_bits) - 1
    symbols = np.asarray(symbols, dtype=np.int64)
    is_esc = symbols == esc
    advance = np.where(is_esc, esc, symbols + 1)
    return (np.cumsum(advance) - 1)[~is_esc]
