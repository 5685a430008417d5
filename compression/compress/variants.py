"""Variant directories: write, measure, find and load compressed models.

A variant directory holds ``weights.tzc`` (compression/runtime/compact.py), ``variant.json`` (the typed config of the
method, its name, bits, sparsity and the base model's config), ``metrics.json``, ``tokenizer.model`` (the
base's, byte for byte) and ``manifest.json`` (compression/runtime/manifest.py) whose metadata identifies the variant:
name, method, bits, sparsity, sizes, BLEU. Variants are found by that metadata, never by directory name.

Size accounting: ``model_bytes`` = every file of the directory, manifest.json included, except
tokenizer.model (shared with the base); ``base_model_bytes`` = the same for the base model directory;
``ratio`` = base_model_bytes / model_bytes. ``variant_bytes`` counts every file including the tokenizer and
``ratio_with_tokenizer`` compares it with every file of the base directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.runtime import catalogue, compact, manifest
from compression.runtime.catalogue import Format, find_variant, list_variants, model_bytes, resolve
from compression.runtime.tokenizer import Tokenizer
from compression.train.checkpoint import read_metrics
from compression.train.model import ModelConfig, Transformer

VARIANT_FILE = "variant.json"
TOKENIZER = catalogue.TOKENIZER_FILE


def base_reference(base_dir: Path) -> dict[str, Any]:
    """Sizes and test BLEU of the base model that ratios and retained BLEU are measured against."""
    test = read_metrics(base_dir).get("test_2016_flickr", {})
    return {"model_bytes": model_bytes(base_dir), "bytes": model_bytes(base_dir, tokenizer=True),
            "bleu": test.get("beam5", {}).get("bleu"), "bleu_greedy": test.get("greedy", {}).get("bleu")}


def write_variant(directory: Path | str, records: dict[str, dict], config, base_dir: Path | str) -> Path:
    """Write weights, variant.json and the tokenizer (metrics and manifest come with ``finalize``)."""
    directory, base_dir = Path(directory), resolve(base_dir)
    if directory.exists():
        for p in directory.iterdir():
            if p.is_file():
                p.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    compact.write_file(directory / compact.WEIGHTS_FILE, records)
    base_cfg = json.loads((base_dir / "config.json").read_text())["model"]
    info = {"name": config.name, "method": config.method.type, "bits": config.bits, "sparsity": config.sparsity,
            "format": Format.COMPACT.value, "config": config.model_dump(mode="json"), "model": base_cfg,
            "base": {"name": manifest.read(base_dir).get("name", "base"), "path": config.base}}
    (directory / VARIANT_FILE).write_text(json.dumps(info, separators=(",", ":")) + "\n")
    shutil.copyfile(base_dir / TOKENIZER, directory / TOKENIZER)
    finalize(directory, {}, base_dir)  # loadable (and verifiable) before it is measured
    return directory


def finalize(directory: Path | str, metrics: dict[str, Any], base_dir: Path | str) -> dict[str, Any]:
    """Write metrics.json and a manifest whose recorded sizes equal the bytes on disk (manifest included)."""
    directory = Path(directory)
    (directory / "metrics.json").write_text(json.dumps(metrics, separators=(",", ":")) + "\n")
    info = json.loads((directory / VARIANT_FILE).read_text())
    base = base_reference(resolve(base_dir))
    test = metrics.get("test_2016_flickr", {})
    bleu, greedy = test.get("beam5", {}).get("bleu"), test.get("greedy", {}).get("bleu")
    tokenizer_bytes = (directory / TOKENIZER).stat().st_size

    def meta_for(size: int) -> dict[str, Any]:
        return {k: info[k] for k in ("name", "method", "bits", "sparsity", "format")} | dict(
            model_bytes=size, base_model_bytes=base["model_bytes"], ratio=round(base["model_bytes"] / size, 3),
            variant_bytes=size + tokenizer_bytes, ratio_with_tokenizer=round(base["bytes"] / (size + tokenizer_bytes), 3),
            bleu=bleu, bleu_greedy=greedy, base_bleu=base["bleu"],
            retained=round(bleu / base["bleu"], 4) if bleu is not None and base["bleu"] else None,
            retained_greedy=round(greedy / base["bleu_greedy"], 4) if greedy is not None and base["bleu_greedy"] else None,
            limit=test.get("limit"))

    return catalogue.write_sized_manifest(directory, meta_for)


def load_records_model(records: dict[str, dict], cfg: ModelConfig) -> Transformer:
    model = Transformer(cfg)
    state = {n: torch.from_numpy(np.ascontiguousarray(compact.dequantize(r))) for n, r in records.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_variant(directory: Path | str, device: str = "cpu") -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """(model with the exact dequantised weights, tokenizer, manifest metadata), after checking every sha256."""
    directory = Path(directory)
    meta = manifest.verify(directory)
    info = json.loads((directory / VARIANT_FILE).read_text())
    model = load_records_model(compact.read_tensors(directory), ModelConfig.from_dict(info["model"]))
    return model.to(device), Tokenizer(directory / TOKENIZER), {**meta, "variant": info}


def load_variant_translator(name: str, device: str = "cpu", base_dir: Path | str | None = None):
    """A TorchTranslator for the variant called ``name`` (searched under base_dir, default models/)."""
    from compression.train.translator import TorchTranslator

    model, tok, meta = load_variant(find_variant(name, base_dir or catalogue.MODELS_ROOT), device)
    translator = TorchTranslator(model, tok, device)
    translator.provider = f"torch:{device}:{meta['name']}"
    return translator


def evaluate_variant(directory: Path | str, device: str = "cpu", limit: int | None = None,
                     batch_size: int = 64) -> dict[str, Any]:
    """Test BLEU (greedy and beam 5) and val BLEU (greedy) of the variant exactly as it loads from disk;
    greedy also per source-length bucket (compression.train.evaluate.length_buckets)."""
    from compression.train.evaluate import evaluate
    from compression.train.translator import TorchTranslator

    model, tok, _ = load_variant(directory, device)
    translator = TorchTranslator(model, tok, device)
    test = evaluate(translator, "test_2016_flickr", (1, 5), limit, batch_size, buckets=True)
    val = evaluate(translator, "val", (1,), limit, batch_size, buckets=True)
    if limit is not None:
        test["limit"] = val["limit"] = limit
    return {"test_2016_flickr": test, "val": val}


__all__ = ["evaluate_variant", "find_variant", "finalize", "list_variants", "load_variant",
           "load_variant_translator", "write_variant"]
