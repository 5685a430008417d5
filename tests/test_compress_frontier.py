"""The frontier configs: every config under configs/variants parses, and the >= 50x / >= 80x ones meet
their ratio on the real base model's shapes (post-training on models/base, which fixes the sizes: layer-wise
pruning keeps exact counts per tensor, so only the Huffman streams can move after retraining)."""

from pathlib import Path

import pytest

from compression.compress.pipeline import VariantConfig, compress
from compression.compress.variants import finalize, write_variant
from compression.runtime.catalogue import DEFAULT_MODEL, REPO_ROOT, model_bytes

CONFIGS = sorted((REPO_ROOT / "configs" / "variants").glob("*.toml"))
# config -> minimum ratio, with the margin the retrained Huffman streams may need (metrics.json included)
FRONTIER = {"deep-compression-2bit": 50 * 1.05, "deep-compression-1bit": 80 * 1.02, "dc-s965-b2": 80 * 1.05,
            "dc-s898-b1g-d5-late": 50 * 1.05, "dc-s943-b1g-d5-late": 80 * 1.02}
SEQKD = {"pruned-90-seqkd", "binary-seqkd", "kmeans-2bit-seqkd", "deep-compression-seqkd", "binary-2c-g2-seqkd",
         "deep-compression-4bit-seqkd", *FRONTIER}
# what compress adds once measured: metrics.json with the buckets (about 1.1 KB); the empty one is 3 bytes
METRICS_BYTES = 1500


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_names_itself(path):
    cfg = VariantConfig.load(path)
    assert cfg.name == path.stem  # the device scripts name their outputs after the file
    if cfg.name in SEQKD:
        assert cfg.finetune is not None and cfg.finetune.targets == "seqkd"


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL / "config.json").exists(), reason="needs models/base")
@pytest.mark.parametrize("name", sorted(FRONTIER))
def test_frontier_ratio_on_the_base_model(tmp_path, name):
    from compression.train.checkpoint import load_model

    cfg = VariantConfig.load(REPO_ROOT / "configs" / "variants" / f"{name}.toml")
    cfg.finetune = None  # post-training: the same masks' sizes and codebook sizes, in seconds
    model, _ = load_model(DEFAULT_MODEL, "cpu")
    d = write_variant(tmp_path / name, compress(model, cfg), cfg, DEFAULT_MODEL)
    finalize(d, {}, DEFAULT_MODEL)
    size = model_bytes(d) + METRICS_BYTES
    ratio = model_bytes(DEFAULT_MODEL) / size
    assert ratio >= FRONTIER[name], (name, size, ratio)
    assert Path(d / "weights.tzc").stat().st_size < size


def test_dominated_by_names_a_variant_as_small_and_as_good_on_every_set():
    from compression.commands.report import dominated_by

    points = {"a": (10.0, 0.97, 0.96), "b": (12.0, 0.98, 0.96), "c": (12.0, 0.99, 0.95), "d": (30.0, 0.90, 0.90),
              "e": (10.0, 0.97, 0.96)}
    got = dominated_by(points)
    assert got == {"a": "b", "e": "b"}  # equal points do not dominate each other; c and d are on the frontier
    assert dominated_by({"x": (5.0, 1.0)}) == {}
