"""What the registry reads from the artifacts: manifest figures, manifests that cannot be read, errors a client may see.

A variant is known by the ``name`` in its manifest. A manifest that cannot be read (invalid JSON, not an
object, no name) has no name, so it is listed under its directory relative to the model root: that is
the only handle an operator has, and ``?variant=`` with it answers 503 with the error instead of 404.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from compression.runtime import catalogue
from compression.runtime import manifest as manifest_lib
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory

log = logging.getLogger(__name__)

EXPORT_HINT = "re-export it (`python -m compression export --variant NAME`) and restart the service"


class Translator(Protocol):
    """What the registry serves: ``OnnxTranslator`` (tests wrap it)."""

    provider: str

    def translate(self, texts: list[str], cfg: SearchConfig | None = None, batch_size: int = 64) -> list[str]: ...


class Loader(Protocol):
    """Opens the variant in ``directory`` (found by its manifest at start-up) with the service's sessions."""

    def __call__(self, directory: Path, sessions: SessionFactory) -> Translator: ...



def unreadable_manifests(root: Path, found: list[dict[str, Any]]) -> dict[str, str]:
    """{directory relative to root: error} for every manifest under root that the catalogue skipped because
    it cannot be read, or that is an export's but names no variant (hidden directories are skipped, as there)."""
    known = {Path(m["path"]).resolve() for m in found}
    broken: dict[str, str] = {}
    for path in sorted(root.rglob(manifest_lib.MANIFEST)):
        directory = path.parent
        rel = directory.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or directory.resolve() in known:
            continue
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            error = f"manifest unreadable ({type(e).__name__}: {_first_line(e)}); {EXPORT_HINT}"
        else:
            if not isinstance(meta, dict):
                error = f"manifest unreadable (a JSON {type(meta).__name__}, not an object); {EXPORT_HINT}"
            elif meta.get("format") == catalogue.Format.ONNX and not isinstance(meta.get("name"), str):
                error = f"manifest unreadable (no variant name); {EXPORT_HINT}"
            else:
                continue  # another kind of artifact (a PyTorch model, a compact variant): not served here
        name = rel.as_posix() or "."
        broken[name] = error
        log.error("variant directory %s is broken: %s", directory, error)
    return broken


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def public_error(e: Exception) -> str:
    """What a client may see: the kind of failure and the fix, without the server's file paths."""
    if isinstance(e, manifest_lib.IntegrityError):
        return "integrity check failed (a file differs from its manifest's sha256); re-export the variant"
    if isinstance(e, FileNotFoundError):
        return "an artifact file is missing; re-export the variant"
    if type(e).__module__.startswith("onnxruntime") or "ONNX" in str(e)[:200]:
        return f"ONNX Runtime cannot open a graph ({type(e).__name__}); re-export the variant"
    return f"{type(e).__name__} while loading (see the server log); re-export the variant"


def number(x: Any) -> float | None:
    """A manifest figure as a number, or None when it is missing or not numeric (never a 500 on /variants)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return x


def bleu_of(manifest: dict[str, Any]) -> float | None:
    """The manifest's test BLEU as one number (from a dict of scores: its greedy or beam score): the one
    measured through ONNX Runtime on this very export when it was evaluated, else the one recorded with the
    variant it was exported from (equal within 0.08 BLEU for every shipped variant: parity_variants.md)."""
    b = manifest.get("bleu_onnx")
    if b is None:
        b = manifest.get("bleu")
    if isinstance(b, dict):
        for key in ("bleu", "beam5", "greedy", "test_2016_flickr"):
            if key in b:
                return bleu_of({"bleu": b[key]})
        return None
    return number(b)


def pick_default(manifests: list[dict[str, Any]]) -> str:
    """The uncompressed variant (by metadata), else the largest one: the reference the others compress."""
    plain = [m for m in manifests if str(m.get("method", "")).lower() in ("none", "fp32", "")]
    pool = plain or manifests
    pool = sorted(pool, key=lambda m: str(m["name"]))  # ties: the first name wins
    return max(pool, key=lambda m: int(m.get("bytes") or 0))["name"]


def resident_weights(translator: Any, model_bytes: int) -> int:
    """Bytes of weights a loaded translator holds: the arrays of a variant served from its stored form
    (``weight_bytes``), else its weight files as they are read (graph-file exports hold those)."""
    held = getattr(translator, "weight_bytes", None)
    return int(held) if held is not None else int(model_bytes)


def describe(v: Any, default: bool) -> dict[str, Any]:
    """One row of GET /variants for a registry ``Variant``."""
    m = v.manifest
    return {
        "name": v.name,
        "method": None if m.get("method") is None else str(m["method"]),
        "bits": number(m.get("bits")),
        "sparsity": number(m.get("sparsity")),
        "bytes": v.cost,
        "model_bytes": v.model_bytes,
        "ratio": number(m.get("ratio")),
        "bleu": bleu_of(m),
        "default": default,
        "loaded": v.state == "loaded",
        "state": v.state,
        "resident_bytes": v.resident if v.state == "loaded" else None,
        "disk_bytes": v.cost,
        "resident_weight_bytes": getattr(v, "weight_bytes", None) if v.state == "loaded" else None,
        "rss_added_bytes": v.resident if v.state == "loaded" else None,
        "provider": v.provider,
        "error": v.error,
    }
