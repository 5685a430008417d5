"""Retention by evaluation set and by source length (greedy), for the compression report.

A variant that holds only on short or in-domain sentences shows it here: for each of test_2016_flickr
and val, the variant's greedy BLEU over all sentences and over each source-length bucket
(compression.train.evaluate.length_buckets), divided by the base model's on the same sentences.

Scores come from a variant's metrics.json (``compress`` measures the buckets) or, for directories
measured before the buckets existed and for the base model (whose metrics.json is left as it is: its
bytes are every ratio's numerator), from a cache beside the report, keyed by name and the sha256 of
the weights. ``measure_missing`` translates whatever neither holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from compression.runtime import manifest

SPLITS = ("test_2016_flickr", "val")
CACHE_FILE = "robustness.json"
BASE = "base"
log = logging.getLogger("tzip.robustness")


def weights_id(directory: Path) -> str:
    """The sha256 of the weight files the manifest lists (a cached score is reused only for these)."""
    files = manifest.read(directory).get("files", {})
    return ",".join(f["sha256"] for n, f in sorted(files.items()) if n.endswith((".tzc", ".safetensors")))


def from_metrics(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """{split: {"bleu", "buckets"}} when metrics.json measured every split in full with buckets."""
    out = {}
    for split in SPLITS:
        entry = metrics.get(split, {})
        greedy = entry.get("greedy", {})
        if "buckets" not in greedy or entry.get("limit"):
            return None
        out[split] = {"bleu": greedy["bleu"], "buckets": greedy["buckets"]}
    return out


def measure(directory: Path, is_base: bool, device: str, batch_size: int = 128) -> dict[str, Any]:
    """Greedy BLEU, all and per bucket, on every split, of the model as it loads from disk."""
    from compression.compress.variants import load_variant
    from compression.train.checkpoint import load_model
    from compression.train.evaluate import evaluate
    from compression.train.translator import TorchTranslator

    model, tok = load_model(directory, device) if is_base else load_variant(directory, device)[:2]
    translator = TorchTranslator(model, tok, device)
    out = {}
    for split in SPLITS:
        greedy = evaluate(translator, split, (1,), None, batch_size, buckets=True)["greedy"]
        out[split] = {"bleu": greedy["bleu"], "buckets": greedy["buckets"]}
    return out


def collect(models: dict[str, Path], cache_path: Path, device: str | None = None) -> dict[str, dict[str, Any]]:
    """Scores of every model in ``models`` (name -> directory; the base under BASE) that metrics.json or
    the cache holds; with a ``device``, the missing ones are measured there and added to the cache."""
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    out: dict[str, dict[str, Any]] = {}
    for name, directory in models.items():
        metrics_file = directory / "metrics.json"
        own = None if name == BASE or not metrics_file.exists() else from_metrics(json.loads(metrics_file.read_text()))
        wid = weights_id(directory)
        cached = cache.get(name)
        if own is not None:
            out[name] = own
        elif cached is not None and cached.get("weights") == wid:
            out[name] = cached["scores"]
        elif device is not None:
            log.info("measuring %s (greedy, %s) on %s", name, " + ".join(SPLITS), device)
            out[name] = measure(directory, name == BASE, device)
            cache[name] = {"weights": wid, "scores": out[name]}
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return out


def retention(scores: dict[str, dict[str, Any]], name: str, split: str) -> dict[str, float | None]:
    """{"all": r, bucket: r, ...}: the variant's BLEU / the base's, on the same sentences."""
    base, own = scores.get(BASE, {}).get(split), scores.get(name, {}).get(split)
    if base is None or own is None:
        return {}
    out: dict[str, float | None] = {"all": own["bleu"] / base["bleu"] if base["bleu"] else None}
    for b, s in base["buckets"].items():
        v = own["buckets"].get(b)
        out[b] = v["bleu"] / s["bleu"] if v is not None and s["bleu"] else None
    return out


def markdown(scores: dict[str, dict[str, Any]], names: list[str], ratios: dict[str, float]) -> list[str]:
    """One table per split: retention over all sentences and per source-length bucket."""
    lines = ["## Robustness: retention by set and source length (greedy)", "",
             "Greedy BLEU of the variant / greedy BLEU of models/base on the same sentences, over the whole set and",
             "per bucket of source length (words of the English source). test_2016_flickr is the set the issue's",
             "targets are measured on; val is the set retrained variants were selected on (so it flatters them",
             "slightly); neither is a held-out set: a variant whose retention falls on long sentences or on one",
             "set only is the one to distrust.", ""]
    if BASE not in scores:
        return lines + ["Not measured yet: run `python -m compression report --measure-robustness --device cuda` (or cpu).", ""]
    for split in SPLITS:
        base = scores[BASE][split]
        buckets = list(base["buckets"])
        per = base["buckets"]
        head = " | ".join(f"{b} words ({per[b]['sentences']})" for b in buckets)
        base_per = ", ".join(f"{b}: {per[b]['bleu']:.2f}" for b in buckets)
        lines += [f"### {split}: base greedy BLEU {base['bleu']:.2f} ({base_per})", "",
                  f"| variant | ratio | all | {head} | worst bucket |",
                  "|---|---:|---:|" + "---:|" * len(buckets) + "---:|"]
        for name in names:
            r = retention(scores, name, split)
            if not r:
                lines.append(f"| {name} | {ratios[name]:.2f} | not measured |" + " |" * len(buckets) + " |")
                continue
            cells = [r.get(b) for b in buckets]
            worst = min((c for c in cells if c is not None), default=None)
            fmt = " | ".join("–" if c is None else f"{100 * c:.1f}%" for c in [r["all"], *cells, worst])
            lines.append(f"| {name} | {ratios[name]:.2f} | {fmt} |")
        lines.append("")
    return lines
