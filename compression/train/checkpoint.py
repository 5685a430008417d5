"""A model directory: sharded fp32 safetensors, config.json, tokenizer.model, metrics.json, manifest.json.

Shards keep every file under 16 MiB (the repository stays lean and files travel from the GPU machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from compression.runtime import manifest
from compression.runtime.catalogue import DEFAULT_MODEL
from compression.runtime.tokenizer import Tokenizer
from compression.train.model import ModelConfig, Transformer

SHARD_BYTES = 15 * 2**20


def save_state_sharded(state: dict[str, torch.Tensor], directory: Path, prefix: str = "model") -> list[str]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t.detach().contiguous().cpu()
        size += nbytes
    for old in directory.glob(f"{prefix}-*-of-*.safetensors"):
        old.unlink()
    names = [f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards, strict=True):
        save_file(shard, str(directory / name))
    return names


def load_state_sharded(directory: Path, prefix: str = "model") -> dict[str, torch.Tensor]:
    files = sorted(directory.glob(f"{prefix}-*-of-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no {prefix}-*-of-*.safetensors in {directory}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def save_model(
    directory: Path | str,
    model: Transformer,
    tokenizer: Tokenizer,
    metrics: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.float() for k, v in model.state_dict().items()}
    save_state_sharded(state, directory)
    (directory / "config.json").write_text(json.dumps({"model": model.cfg.to_dict(), **(meta or {})}, indent=2) + "\n")
    tokenizer.save(directory / "tokenizer.model")
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return manifest.write(directory, {"name": "base", "method": "none", "format": "tzip-fp32"})


def load_model(directory: Path | str = DEFAULT_MODEL, device: str = "cpu") -> tuple[Transformer, Tokenizer]:
    directory = Path(directory)
    manifest.verify(directory)
    cfg = ModelConfig.from_dict(json.loads((directory / "config.json").read_text())["model"])
    model = Transformer(cfg)
    model.load_state_dict(load_state_sharded(directory), strict=True)
    return model.to(device).eval(), Tokenizer(directory / "tokenizer.model")


def read_metrics(directory: Path | str) -> dict[str, Any]:
    path = Path(directory) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def update_metrics(directory: Path | str, new: dict[str, Any]) -> None:
    """Merge scores into metrics.json and refresh the manifest (its digests cover metrics.json)."""
    directory = Path(directory)
    old = manifest.read(directory)
    metrics = {**read_metrics(directory), **new}
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    manifest.write(directory, {k: v for k, v in old.items() if k not in ("files", "bytes")})
