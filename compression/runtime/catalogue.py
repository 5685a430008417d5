"""The one variant catalogue: where artifacts live, which format a directory holds, how big it is.

Every artifact directory carries a manifest (``manifest.py``) whose ``format`` says what it is and whose
``name`` is how users, the CLI and the service call it. Directories are found by that metadata, never by
their names, and at any depth under a root (hidden directories, e.g. an unfinished export, are skipped).
Sizes are counted one way everywhere: ``model_bytes`` = every file of the directory, the manifest included,
except the tokenizer (byte-identical to the base's and shared) and any file the format lists as analysis-only.
No torch here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from compression.runtime import manifest as manifest_lib

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_ROOT = REPO_ROOT / "models"  # the base model and every compressed variant
DEFAULT_MODEL = MODELS_ROOT / "base"
DEFAULT_EXPORT_ROOT = REPO_ROOT / "build" / "onnx"  # where `make export` writes; $TZIP_ONNX_ROOT overrides
TOKENIZER_FILE = "tokenizer.model"


class Format(StrEnum):
    """The ``format`` field of a manifest."""

    MODEL = "tzip-fp32"  # a PyTorch checkpoint: sharded fp32 safetensors (compression.train.checkpoint)
    COMPACT = "tzip-compact-1"  # a compressed variant: weights.tzc (compression.runtime.compact)
    ONNX = "tzip-onnx"  # an exported variant: ONNX graphs (compression.runtime.onnx_format)


def export_root() -> Path:
    return Path(os.environ.get("TZIP_ONNX_ROOT", DEFAULT_EXPORT_ROOT))


def resolve(path: Path | str) -> Path:
    """A path as given, or relative to the repository when it does not exist from here."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


def model_bytes(directory: Path | str, tokenizer: bool = False, exclude: Iterable[str] = ()) -> int:
    """Bytes on disk of an artifact directory as every ratio counts them (see the module docstring)."""
    skip = set(exclude) | (set() if tokenizer else {TOKENIZER_FILE})
    return sum(p.stat().st_size for p in Path(directory).iterdir()
               if p.is_file() and not p.name.startswith(".") and p.name not in skip)


def format_of(directory: Path | str) -> str | None:
    """The manifest's format, or None when there is no readable manifest."""
    try:
        return manifest_lib.read(directory).get("format")
    except (FileNotFoundError, ValueError):
        return None


def scan(root: Path | str, formats: Iterable[Format]) -> list[dict[str, Any]]:
    """Manifests (each with its ``path``) of the directories under ``root`` whose format is one of ``formats``,
    sorted by name. An unreadable manifest is logged and skipped."""
    root, wanted = Path(root), {str(f) for f in formats}
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob(manifest_lib.MANIFEST)):
        if any(part.startswith(".") for part in path.parent.relative_to(root).parts):
            continue
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("skipping %s: unreadable manifest (%s)", path, e)
            continue
        if isinstance(meta, dict) and meta.get("format") in wanted:
            found.append({**meta, "path": str(path.parent)})
    return sorted(found, key=lambda m: str(m.get("name")))


def find(name: str, root: Path | str, formats: Iterable[Format], hint: str) -> Path:
    """The one directory under ``root`` whose manifest is named ``name``; ``hint`` says how to make one."""
    found = scan(root, formats)
    matches = [m for m in found if m.get("name") == name]
    if not matches:
        known = ", ".join(sorted({str(m.get("name")) for m in found})) or "none"
        raise FileNotFoundError(f"no variant named {name!r} under {root} (found: {known}); {hint}")
    if len(matches) > 1:
        raise ValueError(f"{len(matches)} directories named {name!r} under {root}: "
                         f"{[m['path'] for m in matches]}; remove the stale ones")
    return Path(matches[0]["path"])


# -- by kind ------------------------------------------------------------------------------------------
def is_exported(directory: Path | str) -> bool:
    return format_of(directory) == Format.ONNX


def require_exported(directory: Path | str) -> Path:
    """``directory`` as a Path, or FileNotFoundError naming the fix when it is not an export."""
    directory = Path(directory)
    if not is_exported(directory):
        raise FileNotFoundError(f"{directory} is not an exported ONNX variant (no {Format.ONNX} manifest); "
                                "run `python -m compression export` first")
    return directory


def list_exported(root: Path | str | None = None) -> list[dict[str, Any]]:
    return scan(root if root is not None else export_root(), [Format.ONNX])


def find_exported(name: str, root: Path | str | None = None) -> Path:
    return find(name, root if root is not None else export_root(), [Format.ONNX],
                f"export it with `python -m compression export --variant {name}` or `make export`")


def list_variants(root: Path | str = MODELS_ROOT) -> list[dict[str, Any]]:
    return scan(resolve(root), [Format.COMPACT])


def find_variant(name: str, root: Path | str = MODELS_ROOT) -> Path:
    return find(name, resolve(root), [Format.COMPACT],
                "build one with `python -m compression compress --config configs/variants/<name>.toml`")


def find_model(name: str, roots: Iterable[Path | str] = (MODELS_ROOT,)) -> Path:
    """A PyTorch model or compressed variant by name, searched in each root in turn."""
    errors = []
    for root in roots:
        try:
            return find(name, resolve(root), [Format.MODEL, Format.COMPACT], "")
        except FileNotFoundError as e:
            errors.append(str(e).rstrip("; "))
    raise FileNotFoundError("; ".join(errors) + "; train, import or compress it first (`make variants` builds the "
                            "post-training ones)")


# -- manifests that record their own size ---------------------------------------------------------------
def write_sized_manifest(directory: Path | str, meta_for: Callable[[int], dict[str, Any]],
                         exclude: Iterable[str] = ()) -> dict[str, Any]:
    """Write the manifest whose metadata ``meta_for(model_bytes)`` records the directory's own size, manifest
    included: the size is guessed, the manifest written, and the guess grown (or the manifest padded with
    spaces in a ``pad`` field) until the recorded size equals the bytes on disk."""
    directory, exclude = Path(directory), tuple(exclude)
    path = directory / manifest_lib.MANIFEST
    rest = model_bytes(directory, exclude=exclude) - (path.stat().st_size if path.exists() else 0)
    guess, pad = 0, ""
    for _ in range(50):
        written = manifest_lib.write(directory, {**meta_for(rest + guess), "pad": pad})
        size = path.stat().st_size
        if size == guess:
            return written
        if size < guess:
            pad += " " * (guess - size)  # the same numbers, so the next write is exactly `guess` bytes
        else:
            guess = size
    raise RuntimeError(f"the manifest of {directory} did not reach a fixed size; report this bug")
