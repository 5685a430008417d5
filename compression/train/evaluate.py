"""sacreBLEU and chrF on detokenised, cased output (default 13a tokenisation), greedy and beam."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import sacrebleu

from compression.runtime.search import SearchConfig
from compression.train.data import DATA_DIR, load_split


class Translator(Protocol):
    provider: str

    def translate(self, texts: list[str], cfg: SearchConfig | None = None, batch_size: int = 64) -> list[str]: ...


def bleu_chrf(hyps: list[str], refs: list[str]) -> dict[str, float]:
    return {
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
    }


def evaluate(
    translator: Translator,
    split: str = "test_2016_flickr",
    beams: tuple[int, ...] = (1, 5),
    limit: int | None = None,
    batch_size: int = 64,
    data_dir: Path | str = DATA_DIR,
) -> dict[str, Any]:
    """Scores per search: {"greedy": {...}, "beam5": {...}}, each with bleu, chrf, seconds."""
    pairs = load_split(split, data_dir)[:limit]
    src, refs = [s for s, _ in pairs], [t for _, t in pairs]
    result: dict[str, Any] = {"split": split, "sentences": len(pairs), "provider": translator.provider}
    for beam in beams:
        t0 = time.perf_counter()
        hyps = translator.translate(src, SearchConfig(beam=beam), batch_size=batch_size)
        result["greedy" if beam == 1 else f"beam{beam}"] = {
            **bleu_chrf(hyps, refs), "seconds": round(time.perf_counter() - t0, 2)}
    return result
