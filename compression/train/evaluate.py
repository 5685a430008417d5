"""sacreBLEU and chrF on detokenised, cased output (default 13a tokenisation), greedy and beam; and BLEU
per source-length bucket, so that a model that holds only on short sentences shows it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import sacrebleu

from compression.runtime.search import SearchConfig
from compression.train.data import DATA_DIR, load_split

#: upper ends of the source-length buckets, in words of the source: 1-10, 11-15, 16-20, 21+
LENGTH_EDGES = (10, 15, 20)


class Translator(Protocol):
    provider: str

    def translate(self, texts: list[str], cfg: SearchConfig | None = None, batch_size: int = 64) -> list[str]: ...


def bleu_chrf(hyps: list[str], refs: list[str]) -> dict[str, float]:
    return {
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
    }


def bucket_label(words: int, edges: tuple[int, ...] = LENGTH_EDGES) -> str:
    lo = 1
    for hi in edges:
        if words <= hi:
            return f"{lo}-{hi}"
        lo = hi + 1
    return f"{lo}+"


def length_buckets(sources: list[str], hyps: list[str], refs: list[str],
                   edges: tuple[int, ...] = LENGTH_EDGES) -> dict[str, dict[str, float]]:
    """Corpus BLEU of each bucket of sentences grouped by source length (whitespace words), shortest first:
    {"1-10": {"sentences": n, "bleu": b}, ...}; a bucket no sentence falls into is left out."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(bucket_label(len(s.split()), edges), []).append(i)
    labels = [bucket_label(hi, edges) for hi in edges] + [bucket_label(edges[-1] + 1, edges)]
    return {b: {"sentences": len(groups[b]),
                "bleu": round(sacrebleu.corpus_bleu([hyps[i] for i in groups[b]], [[refs[i] for i in groups[b]]]).score, 2)}
            for b in labels if b in groups}


def evaluate(
    translator: Translator,
    split: str = "test_2016_flickr",
    beams: tuple[int, ...] = (1, 5),
    limit: int | None = None,
    batch_size: int = 64,
    data_dir: Path | str = DATA_DIR,
    buckets: bool = False,
) -> dict[str, Any]:
    """Scores per search: {"greedy": {...}, "beam5": {...}}, each with bleu, chrf, seconds; with ``buckets``
    the greedy entry also has "buckets" (``length_buckets``)."""
    pairs = load_split(split, data_dir)[:limit]
    src, refs = [s for s, _ in pairs], [t for _, t in pairs]
    result: dict[str, Any] = {"split": split, "sentences": len(pairs), "provider": translator.provider}
    for beam in beams:
        t0 = time.perf_counter()
        hyps = translator.translate(src, SearchConfig(beam=beam), batch_size=batch_size)
        result["greedy" if beam == 1 else f"beam{beam}"] = {
            **bleu_chrf(hyps, refs), "seconds": round(time.perf_counter() - t0, 2)}
        if buckets and beam == 1:
            result["greedy"]["buckets"] = length_buckets(src, hyps, refs)
    return result
