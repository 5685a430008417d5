"""Variant directories end to end on a tiny model: sizes on disk, exact reloads, lookup by metadata, CLIs."""

import json

import numpy as np
import pytest
import torch

from compression.compress.pipeline import VariantConfig, compress
from compression.compress.variants import (
    finalize,
    find_variant,
    list_variants,
    load_records_model,
    load_variant,
    write_variant,
)
from compression.runtime import compact, manifest
from compression.train.checkpoint import save_model

CONFIGS = {
    "fp16": {"type": "fp16"},
    "int8": {"type": "int8"},
    "kmeans-2bit": {"type": "kmeans", "bits": 2},
    "kmeans-3bit-rows": {"type": "kmeans", "bits": 3, "granularity": "row"},
    "binary": {"type": "binarize", "mode": "sign", "granularity": "row"},
    "binary-2c": {"type": "binarize", "mode": "two-centroid"},
    "pruned-90": {"type": "prune", "sparsity": 0.9},
    "deep-compression": {"type": "deep", "sparsity": 0.8, "bits": 2},
}
METRICS = {"test_2016_flickr": {"greedy": {"bleu": 20.0}, "beam5": {"bleu": 21.0}}}


@pytest.fixture
def base_dir(tmp_path, tiny_model, tiny_tokenizer):
    d = tmp_path / "base"
    save_model(d, tiny_model, tiny_tokenizer, metrics={"test_2016_flickr": {"greedy": {"bleu": 25.0},
                                                                            "beam5": {"bleu": 28.0}}})
    return d


def make_variant(tmp_path, tiny_model, base_dir, name):
    cfg = VariantConfig(name=name, base=str(base_dir), method=CONFIGS[name])
    records = compress(tiny_model, cfg)
    d = tmp_path / "variants" / f"dir-{len(name)}-{name[::-1]}"  # the name is never read from the path
    write_variant(d, records, cfg, base_dir)
    return d, records, finalize(d, METRICS, base_dir)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_recorded_sizes_equal_bytes_on_disk(tmp_path, tiny_model, base_dir, name):
    d, _, meta = make_variant(tmp_path, tiny_model, base_dir, name)
    on_disk = {p.name: p.stat().st_size for p in d.iterdir()}
    assert meta == manifest.read(d) | {}  # finalize returns what it wrote
    assert meta["model_bytes"] == sum(v for k, v in on_disk.items() if k != "tokenizer.model")
    assert meta["variant_bytes"] == sum(on_disk.values())
    base_files = {p.name: p.stat().st_size for p in base_dir.iterdir()}
    assert meta["base_model_bytes"] == sum(v for k, v in base_files.items() if k != "tokenizer.model")
    assert meta["ratio"] == pytest.approx(meta["base_model_bytes"] / meta["model_bytes"], abs=1e-3)
    assert meta["retained"] == pytest.approx(21.0 / 28.0, abs=1e-4)
    assert (d / "tokenizer.model").read_bytes() == (base_dir / "tokenizer.model").read_bytes()
    info = json.loads((d / "variant.json").read_text())
    assert info["name"] == name and info["config"]["method"]["type"] == CONFIGS[name]["type"]


@pytest.mark.parametrize("name", ["int8", "binary", "deep-compression"])
def test_loading_is_bit_identical_to_what_was_evaluated(tmp_path, tiny_model, base_dir, name):
    d, records, _ = make_variant(tmp_path, tiny_model, base_dir, name)
    evaluated = load_records_model(records, tiny_model.cfg)  # the model built from the in-memory records
    loaded, tok, meta = load_variant(d)
    for (n, a), (_, b) in zip(evaluated.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    src = torch.tensor([tok.encode(["A man rides a bike."])[0]])
    tgt = torch.zeros(1, 3, dtype=torch.long)
    assert torch.equal(evaluated(src, tgt), loaded(src, tgt))
    assert meta["name"] == name


def test_lookup_by_metadata_and_tampering(tmp_path, tiny_model, base_dir):
    d, _, _ = make_variant(tmp_path, tiny_model, base_dir, "kmeans-2bit")
    make_variant(tmp_path, tiny_model, base_dir, "binary")
    names = {v["name"] for v in list_variants(tmp_path)}
    assert names == {"kmeans-2bit", "binary"}  # the base (format tzip-fp32) is not a variant
    assert find_variant("kmeans-2bit", tmp_path) == d
    with pytest.raises(FileNotFoundError, match="found: binary, kmeans-2bit"):
        find_variant("nope", tmp_path)
    data = bytearray((d / compact.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1
    (d / compact.WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(manifest.IntegrityError):
        load_variant(d)


def test_compress_and_report_clis(tmp_path, tiny_model, base_dir, capsys):
    from compression.__main__ import main

    cfg = tmp_path / "k.toml"
    cfg.write_text('name = "kmeans-4bit"\n[method]\ntype = "kmeans"\nbits = 4\n')
    out = tmp_path / "models" / "variants" / "k4"
    assert main(["compress", "--config", str(cfg), "--base", str(base_dir), "--out", str(out), "--no-eval",
                 "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["name"] == "kmeans-4bit" and printed["bits"] == 4
    assert main(["report", "--root", str(tmp_path / "models"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["name"] for r in rows] == ["kmeans-4bit"]
    assert set(rows[0]) == {"name", "method", "bits", "sparsity", "path", "bytes", "ratio", "bleu", "retained"}
    assert main(["report", "--root", str(tmp_path / "models"), "--out", str(tmp_path / "bench")]) == 0
    assert (tmp_path / "bench" / "bleu_vs_ratio.png").stat().st_size > 1000
    assert "kmeans-4bit" in (tmp_path / "bench" / "report.md").read_text()


def test_a_variant_continued_from_its_own_weights_starts_as_itself(tmp_path, tiny_model, base_dir, capsys):
    """`init`: the student starts from a variant's dequantised weights (the teacher stays the base); pruned
    and quantised from the start, it has the variant's masks, codebooks and codes at step 0 (centroids to float32 rounding of the re-run means)."""
    from compression.__main__ import main

    first, records, _ = make_variant(tmp_path, tiny_model, base_dir, "deep-compression")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "dc-c"\ninit = "{first}"\n[method]\ntype = "deep"\nsparsity = 0.8\nbits = 2\n'
                   'prune_end = 0.0\nquantize_from = 0.0\n')
    out = tmp_path / "continued"
    assert main(["compress", "--config", str(cfg), "--base", str(base_dir), "--out", str(out), "--no-eval",
                 "--device", "cpu"]) == 0
    again = compact.read_tensors(out)
    assert set(again) == set(records)
    for n, r in records.items():
        if r["kind"] == "sparse":
            assert (again[n]["indices"] == r["indices"]).all() and (again[n]["codes"] == r["codes"]).all()
        np.testing.assert_allclose(compact.dequantize(again[n]), compact.dequantize(r), rtol=1e-5, atol=0,
                                   err_msg=n)
    other = tiny_model.cfg.__class__(**{**tiny_model.cfg.to_dict(), "ffn_dim": tiny_model.cfg.ffn_dim * 2})
    from compression.train.model import Transformer

    with pytest.raises(ValueError, match="continue only from a variant of this base"):
        compress(tiny_model, VariantConfig(name="x", method=CONFIGS["deep-compression"]), init=Transformer(other))


def test_dense_bits_store_the_vectors_as_grid_codes(tmp_path, tiny_model, base_dir):
    """dense_bits: biases, LayerNorm and final_logits_bias on a per-tensor grid; reloads exactly; smaller."""
    sizes = {}
    for bits in (None, 5):
        cfg = VariantConfig(name=f"dc-{bits or 16}", base=str(base_dir), method=CONFIGS["deep-compression"], dense_bits=bits)
        records = compress(tiny_model, cfg)
        d = write_variant(tmp_path / f"v{bits}", records, cfg, base_dir)
        sizes[bits] = (d / compact.WEIGHTS_FILE).stat().st_size
        vectors = {n: r for n, r in records.items() if r["kind"] == "dense"}
        assert vectors and all(("grid" in r) == (bits is not None) for r in vectors.values())
        if bits is not None:
            for n, r in vectors.items():
                a = tiny_model.get_parameter(n).detach().numpy()
                assert int(r["grid"]["codes"].max()) < 1 << bits
                assert np.abs(r["array"] - a).max() <= r["grid"]["step"] / 2 * (1 + 1e-5), n
        evaluated = load_records_model(records, tiny_model.cfg)
        loaded, _, _ = load_variant(d)
        for (n, a), (_, b) in zip(evaluated.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(a, b), n
    assert sizes[5] < sizes[None]
    with pytest.raises(ValueError, match="dense_bits"):
        VariantConfig(name="x", method=CONFIGS["deep-compression"], dense_bits=9)
