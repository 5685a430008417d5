"""The compact file format: every record kind round-trips exactly; corrupt files are refused."""

import numpy as np
import pytest

from compression.runtime import compact


def dense_grid(a: np.ndarray, bits: int) -> dict:
    grid = compact.grid_encode(a, bits)
    return {"kind": "dense", "shape": list(a.shape), "array": compact.grid_decode(grid), "grid": grid}


def records():
    rng = np.random.default_rng(0)
    cb = np.sort(rng.normal(size=(1, 8))).astype(np.float32)
    return {
        "dense16": {"kind": "dense", "shape": [5], "array": rng.normal(size=5).astype(np.float16)},
        "dense32": {"kind": "dense", "shape": [2, 3], "array": rng.normal(size=(2, 3)).astype(np.float32)},
        "kmeans": {"kind": "codebook", "shape": [6, 7], "bits": 3, "rows_per_group": 6,
                   "codes": rng.integers(0, 8, size=(6, 7)).astype(np.uint8), "codebook": cb},
        "kmeans_rows": {"kind": "codebook", "shape": [4, 5], "bits": 2, "rows_per_group": 1,
                        "codes": rng.integers(0, 4, size=(4, 5)).astype(np.uint8),
                        "codebook": rng.normal(size=(4, 4)).astype(np.float16)},
        "sign": {"kind": "binary", "shape": [3, 9], "bits": 1, "rows_per_group": 1, "symmetric": True,
                 "codes": rng.integers(0, 2, size=(3, 9)).astype(np.uint8),
                 "codebook": np.array([[-1.5, 1.5], [-0.25, 0.25], [-2, 2]], dtype=np.float16)},
        "two": {"kind": "binary", "shape": [3, 4], "bits": 1, "rows_per_group": 3, "symmetric": False,
                "codes": rng.integers(0, 2, size=(3, 4)).astype(np.uint8),
                "codebook": np.array([[-0.3, 0.7]], dtype=np.float32)},
        "int8": {"kind": "int8", "shape": [3, 4], "q": rng.integers(-127, 128, size=(3, 4)).astype(np.int8),
                 "scale": np.array([0.1, 0.2, 0.3], dtype=np.float16)},
        "sparse_values": {"kind": "sparse", "shape": [50, 40], "index_bits": 4,
                          "indices": np.sort(rng.choice(2000, 150, replace=False)),
                          "values": rng.normal(size=150).astype(np.float16)},
        "sparse_codes": {"kind": "sparse", "shape": [50, 40], "index_bits": 5, "bits": 2,
                         "indices": np.sort(rng.choice(2000, 300, replace=False)),
                         "codes": rng.integers(0, 4, size=300).astype(np.uint8),
                         "codebook": np.array([[-1, -0.5, 0.5, 1]], dtype=np.float32)},
        "dense_grid": dense_grid(rng.normal(size=(1, 37)).astype(np.float32), 5),
        "dense_grid_flat": dense_grid(np.full(4, 0.5, dtype=np.float32), 3),  # constant: a one-point grid
        "empty_sparse": {"kind": "sparse", "shape": [4, 4], "index_bits": 3, "indices": np.zeros(0, dtype=np.int64),
                         "values": np.zeros(0, dtype=np.float16)},
    }


def test_every_record_kind_round_trips_exactly(tmp_path):
    recs = records()
    size = compact.write_file(tmp_path / compact.WEIGHTS_FILE, recs)
    assert size == (tmp_path / compact.WEIGHTS_FILE).stat().st_size
    back = compact.read_tensors(tmp_path)
    assert list(back) == list(recs)
    for name, rec in recs.items():
        got = back[name]
        assert got["kind"] == rec["kind"] and list(got["shape"]) == list(rec["shape"])
        for key, value in rec.items():
            if isinstance(value, np.ndarray):
                assert got[key].dtype == value.dtype, (name, key)
                assert np.array_equal(got[key], value), (name, key)
        assert np.array_equal(compact.dequantize(got), compact.dequantize(rec))
        assert compact.dequantize(got).shape == tuple(rec["shape"])


def test_dequantize_semantics():
    recs = records()
    w = compact.dequantize(recs["kmeans_rows"])
    r = recs["kmeans_rows"]
    assert w[2, 3] == np.float32(r["codebook"][2, r["codes"][2, 3]])
    s = compact.dequantize(recs["sparse_codes"]).reshape(-1)
    assert np.count_nonzero(s) == 300 and s[recs["sparse_codes"]["indices"][0]] in (-1, -0.5, 0.5, 1)
    assert np.allclose(compact.dequantize(recs["int8"]), recs["int8"]["q"] * recs["int8"]["scale"].astype(np.float32)[:, None])


def test_packed_codes_take_bits_not_bytes(tmp_path):
    codes = np.random.default_rng(1).integers(0, 4, size=(256, 256)).astype(np.uint8)
    rec = {"w": {"kind": "codebook", "shape": [256, 256], "bits": 2, "rows_per_group": 256, "codes": codes,
                 "codebook": np.arange(4, dtype=np.float32)[None]}}
    size = compact.write_file(tmp_path / "x.tzc", rec)
    assert 256 * 256 // 4 <= size < 256 * 256 // 4 + 300


def test_bad_files_are_refused(tmp_path):
    (tmp_path / compact.WEIGHTS_FILE).write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(compact.FormatError, match="compress"):
        compact.read_tensors(tmp_path)
    compact.write_file(tmp_path / compact.WEIGHTS_FILE, records())
    data = (tmp_path / compact.WEIGHTS_FILE).read_bytes()
    (tmp_path / compact.WEIGHTS_FILE).write_bytes(data[:-50])
    with pytest.raises(compact.FormatError, match="truncated"):
        compact.read_tensors(tmp_path)
    with pytest.raises(ValueError, match="unknown record kind"):
        compact.write_file(tmp_path / "y.tzc", {"x": {"kind": "bogus", "shape": [1]}})


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_grid_vectors_are_the_nearest_grid_points_and_cost_bits_per_value(tmp_path, bits):
    rng = np.random.default_rng(bits)
    a = (rng.normal(size=8000) * 0.3 - 0.2).astype(np.float32)
    grid = compact.grid_encode(a, bits)
    values = compact.grid_decode(grid)
    assert values.dtype == np.float32 and int(grid["codes"].max()) == (1 << bits) - 1 and int(grid["codes"].min()) == 0
    assert np.abs(values - a).max() <= grid["step"] / 2 * (1 + 1e-5)  # the nearest point of the grid
    assert values.min() == a.min() and np.isclose(values.max(), a.max(), rtol=1e-6, atol=1e-6)
    rec = {"kind": "dense", "shape": [8000], "array": values, "grid": grid}
    size = compact.write_file(tmp_path / compact.WEIGHTS_FILE, {"v": rec})
    assert size < 8000 * bits / 8 + 200  # the codes, not the floats
    back = compact.read_tensors(tmp_path)["v"]
    assert np.array_equal(back["array"], values) and np.array_equal(compact.dequantize(back), values)


def test_grid_bits_out_of_range_are_refused():
    with pytest.raises(ValueError, match="1-8"):
        compact.grid_encode(np.zeros(3, dtype=np.float32), 9)
