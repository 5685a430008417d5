"""sha256 manifests: every artifact directory lists its files, their sizes and digests (no torch).

A variant is known by its manifest's metadata, never by its directory or file name. Loaders call
``verify`` before reading a single weight, so a tampered or truncated file is refused up front.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class IntegrityError(RuntimeError):
    """An artifact's bytes differ from what its manifest recorded."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def write(directory: Path | str, meta: dict[str, Any]) -> dict[str, Any]:
    """Record every file of ``directory`` (sizes and sha256) with ``meta``; returns the manifest."""
    directory = Path(directory)
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in artifact_files(directory)}
    total = sum(p.stat().st_size for p in artifact_files(directory))
    manifest = {**meta, "files": files, "bytes": total}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read(directory: Path | str) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a tzip artifact directory (export or compress it first)")
    return json.loads(path.read_text())


def verify(directory: Path | str, files: list[str] | None = None) -> dict[str, Any]:
    """Check the listed files (default: all) against the manifest; raise IntegrityError on any mismatch."""
    directory = Path(directory)
    manifest = read(directory)
    recorded = manifest.get("files", {})
    for name in files if files is not None else list(recorded):
        if name not in recorded:
            raise IntegrityError(f"{directory}/{name} is not listed in {MANIFEST}; re-run the export that made it")
        path = directory / name
        if not path.exists():
            raise IntegrityError(f"{path} is missing; the artifact is incomplete, re-export it")
        digest = sha256_file(path)
        if digest != recorded[name]["sha256"]:
            raise IntegrityError(
                f"{path} has sha256 {digest[:12]}… but its manifest records {recorded[name]['sha256'][:12]}…: "
                "the file was modified or corrupted; re-export the variant (refusing to load it)"
            )
    return manifest
