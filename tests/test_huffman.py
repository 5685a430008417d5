import numpy as np
import pytest

from compression.runtime import huffman


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_huffman_round_trip(n):
    rng = np.random.default_rng(n)
    symbols = np.minimum(rng.geometric(0.35, size=n) - 1, 31)
    lengths, data, nbits = huffman.encode(symbols, 32)
    assert np.array_equal(huffman.decode(lengths, data, n, nbits), symbols)


def test_huffman_beats_fixed_width_on_skewed_data_and_single_symbol():
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.5, size=20000) - 1, 15)
    _, data, nbits = huffman.encode(symbols, 16)
    assert nbits < 0.55 * 4 * len(symbols)  # entropy ~2 bits against 4 fixed
    lengths, data, nbits = huffman.encode(np.full(9, 3), 8)
    assert nbits == 9 and np.array_equal(huffman.decode(lengths, data, 9, nbits), np.full(9, 3))


def test_code_lengths_are_prefix_free_and_limited():
    counts = np.array([2**i for i in range(30)])  # would need 29-bit codes unlimited
    lengths = huffman.code_lengths(counts, max_len=12)
    assert lengths.max() <= 12
    assert sum(2.0 ** -lengths[lengths > 0].astype(float)) <= 1.0  # Kraft: a prefix code exists


@pytest.mark.parametrize("index_bits", [1, 3, 5])
def test_relative_offsets_round_trip(index_bits):
    rng = np.random.default_rng(index_bits)
    idx = np.sort(rng.choice(100000, 3000, replace=False))
    sym = huffman.offsets_encode(idx, index_bits)
    assert sym.max() <= 2**index_bits - 1
    assert np.array_equal(huffman.offsets_decode(sym, index_bits), idx)
    for edge in (np.array([], dtype=np.int64), np.array([0]), np.array([0, 1, 2, 500])):
        assert np.array_equal(huffman.offsets_decode(huffman.offsets_encode(edge, index_bits), index_bits), edge)


def test_corrupt_stream_is_refused():
    lengths, data, nbits = huffman.encode(np.arange(8).repeat(10), 8)
    with pytest.raises(ValueError, match="corrupt"):
        huffman.decode(lengths, data, 79, nbits)
