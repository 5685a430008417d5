"""Sequence-level knowledge distillation (Kim & Rush 2016): the base model's own translations of the
training sources become the targets a compressed student is retrained on.

The targets are made once (``python -m compression seqkd``, beam search on the GPU) and saved as gzip
text, one line per training source, beside a JSON file that identifies them: the base model, the search,
and the sha256 of the source lines they translate, so a file made from other sources (or another order)
is refused instead of silently pairing the wrong sentences. Fine-tuning (compression/compress/finetune.py,
``targets = "seqkd"`` or ``"both"``) reads them with ``training_pairs``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from compression.runtime import manifest
from compression.runtime.catalogue import REPO_ROOT
from compression.runtime.search import SearchConfig
from compression.train.data import DataError, load_split, read_lines

#: where ``python -m compression seqkd`` writes and fine-tuning looks by default
DEFAULT_TARGETS = "data/seqkd/train.base-beam5.de.gz"


def sources_sha256(sources: list[str]) -> str:
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()


def meta_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".gz") + ".json")


def resolve_targets(path: Path | str) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def write_targets(path: Path | str, sources: list[str], hyps: list[str], meta: dict[str, Any]) -> Path:
    """One translation per line (gzip, reproducible bytes) and its identifying JSON beside it."""
    if len(sources) != len(hyps):
        raise ValueError(f"{len(hyps)} translations for {len(sources)} sources")
    if any("\n" in h for h in hyps):
        raise ValueError("a translation contains a newline; the file holds one sentence per line")
    path = resolve_targets(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(hyps) + "\n").encode())
    info = {**meta, "sentences": len(hyps), "sources_sha256": sources_sha256(sources)}
    meta_path(path).write_text(json.dumps(info, indent=1) + "\n")
    return path


def read_targets(path: Path | str, sources: list[str]) -> list[str]:
    """The translations of ``sources`` (the first n training sources), after checking they are theirs."""
    path = resolve_targets(path)
    if not path.exists() or not meta_path(path).exists():
        raise DataError(f"no sequence-level distillation targets at {path} (and {meta_path(path).name}); make them "
                        f"with `python -m compression seqkd --out {path}` (a GPU run: see scripts/device_frontier.sh)")
    info = json.loads(meta_path(path).read_text())
    hyps = read_lines(path)
    n = info["sentences"]
    if len(hyps) != n:
        raise DataError(f"{path} has {len(hyps)} lines but {meta_path(path).name} says {n}; regenerate it")
    if n < len(sources):
        raise DataError(f"{path} translates the first {n} training sources but fine-tuning uses {len(sources)}; "
                        "regenerate it without --limit, or set train_limit")
    full_src = sources if n == len(sources) else [s for s, _ in load_split("train")[:n]]
    if sources_sha256(full_src) != info["sources_sha256"] or full_src[: len(sources)] != sources:
        raise DataError(f"{path} was made from other training sources (sha256 differs); regenerate it")
    return hyps[: len(sources)]


def training_pairs(targets: str, path: Path | str, limit: int | None = None) -> list[tuple[str, str]]:
    """Training pairs for fine-tuning: the references, the base's translations, or both (concatenated).

    Empty translations are dropped (the student would learn to stop at once)."""
    ref = load_split("train")[:limit]
    if targets == "reference":
        return ref
    hyps = read_targets(path, [s for s, _ in ref])
    kd = [(s, h) for (s, _), h in zip(ref, hyps, strict=True) if h.strip()]
    if targets == "seqkd":
        return kd
    if targets == "both":
        return ref + kd
    raise ValueError(f"unknown targets {targets!r}; use reference, seqkd or both")


def generate(model, tokenizer, sources: list[str], beam: int, device, batch_size: int = 1000) -> list[str]:
    """The model's translations of ``sources`` (length-sorted batches; order restored)."""
    from compression.train.translator import TorchTranslator

    search = SearchConfig(beam=beam, max_len=min(SearchConfig.max_len, model.cfg.max_positions - 1))
    return TorchTranslator(model, tokenizer, device).translate(sources, search, batch_size=batch_size)


def make_targets(base_dir: Path, out: Path | str, beam: int, device: str, batch_size: int = 1000,
                 limit: int | None = None) -> dict[str, Any]:
    """Translate the training sources with the base model and write the targets; returns their metadata."""
    from compression.train.checkpoint import load_model

    model, tok = load_model(base_dir, device)
    sources = [s for s, _ in load_split("train")[:limit]]
    t0 = time.time()
    hyps = generate(model, tok, sources, beam, device, batch_size)
    seconds = round(time.time() - t0, 1)
    base = manifest.read(base_dir)
    meta = {"base": base.get("name", "base"), "base_weights_sha256": {k: v["sha256"] for k, v in base.get("files", {}).items()
                                                                     if k.endswith(".safetensors")},
            "beam": beam, "seconds": seconds, "device": str(device), "batch_size": batch_size,
            "command": f"python -m compression seqkd --beam {beam}" + (f" --limit {limit}" if limit else "")}
    path = write_targets(out, sources, hyps, meta)
    return {**meta, "path": str(path), "sentences": len(hyps),
            "empty": sum(not h.strip() for h in hyps)}
