"""Multi30k En-De, read from the copy inside the repository, checked before anything trains on it."""

from __future__ import annotations

import gzip
from pathlib import Path

from compression.runtime.catalogue import REPO_ROOT

DATA_DIR = REPO_ROOT / "data" / "multi30k"


class DataError(ValueError):
    """The data on disk is missing or broken; the message says which file and what to do."""


def read_lines(path: Path) -> list[str]:
    """One sentence per line, UTF-8, optionally gzip-compressed."""
    if not path.exists():
        raise DataError(f"missing data file {path}; copy Multi30k into {DATA_DIR} (see data/multi30k/README.md)")
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 ({e.reason}); re-export the file as UTF-8") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _find(data_dir: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}.gz", f"{split}.{lang}"):
        if (data_dir / name).exists():
            return data_dir / name
    return data_dir / f"{split}.{lang}.gz"


def load_split(split: str, data_dir: Path | str = DATA_DIR, src: str = "en", tgt: str = "de") -> list[tuple[str, str]]:
    """Sentence pairs of one split, after checking the two sides line up."""
    data_dir = Path(data_dir)
    src_path, tgt_path = _find(data_dir, split, src), _find(data_dir, split, tgt)
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src_path.name} has {len(src_lines)} lines but {tgt_path.name} has {len(tgt_lines)}: "
            "the sides must be parallel, one sentence per line"
        )
    if not src_lines:
        raise DataError(f"{src_path} is empty")
    empty = [i + 1 for i, (s, t) in enumerate(zip(src_lines, tgt_lines, strict=True)) if not s.strip() or not t.strip()]
    if empty:
        raise DataError(f"{src_path.name}/{tgt_path.name}: empty sentence on line(s) {empty[:5]}; remove or fix those pairs")
    return list(zip(src_lines, tgt_lines, strict=True))
