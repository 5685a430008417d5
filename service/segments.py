"""Sentence segmentation: a pasted paragraph is translated sentence by sentence, then joined back.

The models were trained on single sentences: given several, they translate the first and stop. So every
text is cut into sentences by pysbd (rule-based, knows abbreviations such as "Dr.", "U.S." or "p.m."),
a sentence longer than ``max_chars`` is cut further at the last clause or word boundary before the
limit (the model's positions are finite, and one huge segment would hold an inference call for long),
and the translations are joined with the whitespace that separated the sources (a paragraph break stays
one). A text with no sentence end followed by more text skips pysbd: most requests are one sentence,
and pysbd costs about 20 ms per 1,000 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_MAYBE_SEVERAL = re.compile(r"[.!?\u2026\u3002;:]['\")\]\u201d\u2019]*\s+\S")
_CLAUSE = re.compile(r"[,;:\u2014\u2013)]\s+")


@dataclass(frozen=True)
class Segmented:
    """Segments of several texts, flattened in order; ``owner[i]`` is the text segment i came from and
    ``sep[i]`` the whitespace that followed it in that text."""

    segments: list[str]
    owner: list[int]
    sep: list[str]
    texts: int

    def join(self, translations: list[str]) -> list[str]:
        out = [""] * self.texts
        for t, who, sep in zip(translations, self.owner, self.sep, strict=True):
            out[who] += t.strip() + sep
        return [o.rstrip() for o in out]


@lru_cache(maxsize=1)
def _segmenter():  # noqa: ANN202 (pysbd is untyped)
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def ready() -> None:
    """Build the segmenter now (start-up), so a missing pysbd stops the service with the fix instead of
    answering 500 to the first multi-sentence text."""
    from .registry import StartupError

    try:
        _segmenter()
    except ImportError as e:
        raise StartupError(f"sentence segmentation needs pysbd ({e}); install the service's dependencies: "
                           "pip install '.[service]'") from None


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, each with the whitespace that follows it (their concatenation is ``text``
    up to leading whitespace)."""
    text = text.lstrip()
    if not _MAYBE_SEVERAL.search(text):
        return [text]
    return [s for s in _segmenter().segment(text) if s.strip()] or [text]


def cut(sentence: str, max_chars: int) -> list[str]:
    """A sentence longer than ``max_chars`` in pieces of at most that many characters, cut after the last
    clause mark (comma, semicolon, dash...) in the second half of the window, else at the last space, else
    (one very long word) at the limit."""
    pieces = []
    rest = sentence
    while len(rest.rstrip()) > max_chars:
        window = rest[: max_chars + 1]
        at = max((m.end() for m in _CLAUSE.finditer(window) if m.end() > max_chars // 2), default=-1)
        if at < 0:
            space = window.rstrip().rfind(" ")
            at = space + 1 if space > 0 else max_chars
        pieces.append(rest[:at])
        rest = rest[at:]
    return pieces + ([rest] if rest.strip() else [])


def segment(texts: list[str], max_chars: int) -> Segmented:
    segments, owner, sep = [], [], []
    for i, text in enumerate(texts):
        for s in sentences(text):
            for piece in cut(s, max_chars):
                core = piece.rstrip()
                segments.append(core)
                owner.append(i)
                sep.append(piece[len(core):] or " ")
    return Segmented(segments, owner, sep, len(texts))
