"""The shipped variants (models/variants): integrity, sizes on disk, exact reload, a known-good translation."""

import json
from pathlib import Path

import pytest

from compression.compress.variants import load_variant
from compression.runtime import compact, manifest
from compression.runtime.catalogue import MODELS_ROOT, list_variants, model_bytes

SHIPPED = list_variants(MODELS_ROOT)
GOOD = {"kmeans-4bit", "kmeans-4bit-pt", "kmeans-2bit", "fp16", "int8", "deep-compression", "pruned-90"}

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not SHIPPED, reason="no variants shipped yet")
@pytest.mark.parametrize("meta", SHIPPED, ids=[v["name"] for v in SHIPPED])
def test_shipped_variant(meta):
    d = Path(meta["path"])
    manifest.verify(d)
    assert meta["model_bytes"] == model_bytes(d)  # the recorded size is the bytes on disk
    assert meta["ratio"] == pytest.approx(meta["base_model_bytes"] / meta["model_bytes"], abs=1e-3)
    info = json.loads((d / "variant.json").read_text())
    assert info["name"] == meta["name"] and info["method"] == meta["method"]
    model, tok, _ = load_variant(d)
    records = compact.read_tensors(d)
    for name, p in model.named_parameters():
        assert (p.detach().numpy() == compact.dequantize(records[name])).all(), name
    if meta["name"] in GOOD and (meta.get("retained") or 0) > 0.95:
        from compression.runtime.search import SearchConfig
        from compression.train.translator import TorchTranslator

        out = TorchTranslator(model, tok).translate(["A man is riding a bicycle."], SearchConfig(beam=5))
        assert out[0].startswith("Ein Mann")
