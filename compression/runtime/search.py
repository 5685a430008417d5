"""Greedy and beam search over any backend, in NumPy (no torch).

PyTorch and ONNX Runtime share this one implementation, so a difference between their outputs can
only come from their logits, never from the search. A backend provides a ``Stepper``: it has encoded
a batch (each sentence repeated ``expand`` times for beam search) and, given the last token of every
row and optionally a reordering of rows, returns the next-token log-probabilities of every row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np


class Stepper(Protocol):
    """May also have ``step_argmax(last) -> (N,)``, equal to ``step(last, None).argmax(-1)``: greedy
    search then uses it (a GPU backend can take the argmax where the scores are); and
    ``step_topk(last, reorder, k) -> (scores (N, k'), ids (N, k'))``, each row's k' = min(k, V) best
    scores of ``step`` and their token ids: beam search then uses it. Beam search with K beams needs only
    each row's best 2K tokens (the best 2K of a sentence's K * V candidates lie among them), so a GPU
    backend copies (N, 2K) numbers to the host per step instead of (N, V)."""

    def step(self, last: np.ndarray, reorder: np.ndarray | None) -> np.ndarray:
        """last (N,) int64 -> scores (N, V) float32; ``reorder`` (N,) permutes rows of the cache first."""
        ...


@dataclass(frozen=True)
class SearchConfig:
    beam: int = 1
    max_len_a: float = 1.5  # maximum output length = a * source length + b, capped by max_len
    max_len_b: int = 10
    max_len: int = 256
    length_penalty: float = 1.0  # hypothesis score = sum log p / length ** length_penalty

    def __post_init__(self) -> None:
        if not 1 <= self.beam <= 64:
            raise ValueError(f"beam must be in 1..64, got {self.beam}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")

    def capped(self, max_positions: int) -> SearchConfig:
        """The same search with max_len within the model's position table (it cannot decode further)."""
        return replace(self, max_len=min(self.max_len, max_positions)) if self.max_len > max_positions else self

    def limit(self, src_len: int) -> int:
        return max(1, min(self.max_len, int(self.max_len_a * src_len + self.max_len_b)))


def greedy(stepper: Stepper, limits: list[int], start_id: int, eos_id: int) -> list[list[int]]:
    """limits[b]: the most tokens sentence b may produce (its own, so batching never changes a result)."""
    batch, steps = len(limits), max(limits)
    limit = np.asarray(limits)
    last = np.full(batch, start_id, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    out = np.full((batch, steps), eos_id, dtype=np.int64)
    step_argmax = getattr(stepper, "step_argmax", None) or (lambda last: stepper.step(last, None).argmax(-1))
    for t in range(steps):
        nxt = np.array(step_argmax(last), dtype=np.int64)  # a copy: the search writes into it
        nxt[finished] = eos_id
        out[:, t] = nxt
        finished |= (nxt == eos_id) | (t + 1 >= limit)
        if finished.all():
            break
        last = nxt
    return [_strip(row, eos_id) for row in out]


def beam_search(
    stepper: Stepper, limits: list[int], beam: int, start_id: int, eos_id: int, length_penalty: float
) -> list[list[int]]:
    """Stepper rows are sentence-major: row b*beam + k is beam k of sentence b; limits as in greedy."""
    K, batch, steps = beam, len(limits), max(limits)
    scores = np.full((batch, K), -np.inf, dtype=np.float64)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive so the first step is not duplicated
    seqs = np.zeros((batch * K, 0), dtype=np.int64)
    last = np.full(batch * K, start_id, dtype=np.int64)
    reorder: np.ndarray | None = None
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    step_topk = getattr(stepper, "step_topk", None)
    for t in range(steps):
        if step_topk is not None:
            logp, ids = step_topk(last, reorder, 2 * K)  # (B*K, W) each, W = min(2K, V)
        else:
            logp, ids = stepper.step(last, reorder), None  # (B*K, V)
        W = logp.shape[1]
        cand = (scores[:, :, None] + logp.astype(np.float64).reshape(batch, K, W)).reshape(batch, K * W)
        top = np.argpartition(-cand, 2 * K, axis=1)[:, : 2 * K] if K * W > 2 * K else np.tile(np.arange(K * W), (batch, 1))
        top_scores = np.take_along_axis(cand, top, 1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
        src_beam = top // W
        tok = top % W if ids is None else np.take_along_axis(np.asarray(ids, dtype=np.int64).reshape(batch, K * W), top, 1)
        new_scores = np.full((batch, K), -np.inf)
        new_rows = np.zeros((batch, K), dtype=np.int64)
        new_tok = np.full((batch, K), eos_id, dtype=np.int64)
        for b in range(batch):
            if done[b]:
                new_rows[b] = b * K  # keep shapes; these rows are ignored
                continue
            n = 0
            for rank in range(top.shape[1]):
                s = top_scores[b, rank]
                if not np.isfinite(s):
                    break
                row = b * K + src_beam[b, rank]
                if tok[b, rank] == eos_id:
                    if rank < K:  # an EOS only counts while it ranks among the best K
                        hyp = seqs[row].tolist()
                        finished[b].append((s / (len(hyp) + 1) ** length_penalty, hyp))
                    continue
                new_scores[b, n], new_rows[b, n], new_tok[b, n] = s, row, tok[b, rank]
                n += 1
                if n == K:
                    break
            if len(finished[b]) >= K or n == 0:
                done[b] = True
        if done.all():
            break
        reorder = new_rows.reshape(-1)
        seqs = np.concatenate([seqs[reorder], new_tok.reshape(-1, 1)], axis=1)
        scores, last = new_scores, new_tok.reshape(-1)
        for b in range(batch):
            if not done[b] and t + 1 >= limits[b]:  # out of length: unfinished beams compete too
                for k in range(K):
                    if np.isfinite(scores[b, k]):
                        hyp = seqs[b * K + k].tolist()
                        finished[b].append((scores[b, k] / len(hyp) ** length_penalty, hyp))
                done[b] = True
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]


def pad_batch(seqs: list[list[int]], pad_id: int) -> np.ndarray:
    out = np.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (less padding), longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def search_ids(stepper: Stepper, src_ids: list[list[int]], cfg: SearchConfig, start_id: int, eos_id: int) -> list[list[int]]:
    """Run greedy or beam search (by cfg.beam) for a batch whose stepper has encoded src_ids."""
    limits = [cfg.limit(len(s)) for s in src_ids]
    if cfg.beam == 1:
        return greedy(stepper, limits, start_id, eos_id)
    return beam_search(stepper, limits, cfg.beam, start_id, eos_id, cfg.length_penalty)


class LengthBatchedTranslator:
    """Text in, text out for any backend: tokenise, translate in length-sorted batches, restore the order.
    Subclasses (PyTorch, ONNX Runtime) provide ``tokenizer`` and ``translate_ids``."""

    tokenizer: Any
    provider: str = "unknown"  # the execution provider (or device) that really runs it

    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig) -> list[list[int]]:
        raise NotImplementedError

    def translate(self, texts: list[str], cfg: SearchConfig | None = None, batch_size: int = 64) -> list[str]:
        cfg = cfg or SearchConfig()
        ids = self.tokenizer.encode(texts)
        out: list[list[int]] = [[] for _ in texts]
        for idx in length_batches([len(x) for x in ids], batch_size):
            for i, hyp in zip(idx, self.translate_ids([ids[i] for i in idx], cfg), strict=True):
                out[i] = hyp
        return self.tokenizer.decode(out)


def _strip(row: np.ndarray, eos_id: int) -> list[int]:
    ids = row.tolist()
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
