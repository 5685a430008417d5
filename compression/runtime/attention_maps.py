"""Attention maps of one sentence, and how sharp they are (NumPy only: the service uses this).

A *source* of attention (``AttentionSource``: the ONNX graph of ``attention_runtime`` or the PyTorch
model of ``attention_torch``) runs a teacher-forced pass over a padded batch and returns every softmax:

    encoder (Le, B, H, S, S)   decoder (Ld, B, H, T, T)   cross (Ld, B, H, T, S)

Teacher forcing on an output ``y`` (ids ending with EOS): the decoder reads ``[start] + y[:-1]`` and row
``t`` of the decoder and cross maps is the step that predicted ``y[t]``, so rows are labelled with the
output tokens, decoder self-attention columns with the tokens read (``<s>`` then y[:-1]).

Sharpness is the entropy of each attention row in nats (0 = all weight on one key); lower is sharper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

KINDS = ("encoder", "decoder", "cross")
KIND_TITLES = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}
START_LABEL = "<s>"


class AttentionSource(Protocol):
    def batch(self, src: np.ndarray, tgt_in: np.ndarray) -> dict[str, np.ndarray]:
        """src (B, S), tgt_in (B, T) int64, padded with pad_id -> {kind: (L, B, H, Tq, Tk) float32}."""
        ...


class AttentionIndexError(ValueError):
    """A layer or head that the variant does not have (the service answers 422 with this message)."""


@dataclass(frozen=True)
class Shape:
    """Layers and heads of a model, enough to check an index before any computation."""

    encoder_layers: int
    decoder_layers: int
    heads: int

    def layers(self, kind: str) -> int:
        check_kind(kind)
        return self.encoder_layers if kind == "encoder" else self.decoder_layers

    def check(self, kind: str, layer: int, head: int, variant: str = "this variant") -> None:
        n = self.layers(kind)
        if not 0 <= layer < n:
            raise AttentionIndexError(f"layer {layer} is out of range: {variant} has {n} {KIND_TITLES[kind]} "
                                      f"layers, numbered 0 to {n - 1}")
        if not 0 <= head < self.heads:
            raise AttentionIndexError(f"head {head} is out of range: {variant} has {self.heads} heads per layer, "
                                      f"numbered 0 to {self.heads - 1}")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise AttentionIndexError(f"kind {kind!r} is not one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention map of one sentence pair (batch dimension removed, padding cut off)."""

    encoder: np.ndarray  # (Le, H, S, S)
    decoder: np.ndarray  # (Ld, H, T, T)
    cross: np.ndarray  # (Ld, H, T, S)
    source_tokens: list[str]  # S pieces, the last one </s>
    target_tokens: list[str]  # T output pieces, the last one </s>

    @property
    def shape(self) -> Shape:
        return Shape(self.encoder.shape[0], self.decoder.shape[0], self.encoder.shape[1])

    @property
    def decoder_input_tokens(self) -> list[str]:
        return [START_LABEL] + self.target_tokens[:-1]

    def labels(self, kind: str) -> tuple[list[str], list[str]]:
        """(row labels, column labels) of a map of this kind."""
        check_kind(kind)
        if kind == "encoder":
            return self.source_tokens, self.source_tokens
        if kind == "decoder":
            return self.target_tokens, self.decoder_input_tokens
        return self.target_tokens, self.source_tokens

    def select(self, kind: str, layer: int, head: int, variant: str = "this variant") -> np.ndarray:
        """The (rows, cols) map of one layer and head; AttentionIndexError names the valid range."""
        self.shape.check(kind, layer, head, variant)
        return getattr(self, kind)[layer, head]


# -- teacher forcing ---------------------------------------------------------------------------------
def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def with_eos(y: Sequence[int], eos_id: int) -> list[int]:
    return list(y) if list(y[-1:]) == [eos_id] else [*y, eos_id]


def teacher_forcing(outputs: Sequence[Sequence[int]], start_id: int) -> list[list[int]]:
    """The decoder inputs that predict each output (its tokens, EOS last): [start] + y[:-1]."""
    return [[start_id, *y[:-1]] for y in outputs]


def run_batch(source: AttentionSource, src_ids: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]],
              pad_id: int, start_id: int) -> dict[str, np.ndarray]:
    """All maps of a batch of (source ids, output ids with EOS last) pairs, padded."""
    src = pad_rows(src_ids, pad_id)
    tgt_in = pad_rows(teacher_forcing(outputs, start_id), pad_id)
    return source.batch(src, tgt_in)


def sentence_maps(source: AttentionSource, src_ids: Sequence[int], output_ids: Sequence[int], pieces,
                  pad_id: int, start_id: int) -> AttentionMaps:
    """One sentence's maps (output ids with EOS last); ``pieces(id) -> str`` labels the tokens."""
    y = list(output_ids)
    maps = run_batch(source, [src_ids], [y], pad_id, start_id)
    return AttentionMaps(
        encoder=maps["encoder"][:, 0], decoder=maps["decoder"][:, 0], cross=maps["cross"][:, 0],
        source_tokens=[pieces(int(i)) for i in src_ids], target_tokens=[pieces(int(i)) for i in y],
    )


# -- sharpness ---------------------------------------------------------------------------------------
def row_entropy(weights: np.ndarray) -> np.ndarray:
    """Entropy in nats of every distribution on the last axis (0 log 0 = 0)."""
    w = np.asarray(weights, dtype=np.float64)
    logs = np.log(np.where(w > 0, w, 1.0))
    return -(w * logs).sum(-1)


def map_entropy(weights: np.ndarray, kind: str) -> float:
    """Mean row entropy of one (rows, cols) map in nats, without the decoder's first row (see valid_rows)."""
    h = row_entropy(weights)
    return float(h[1:].mean() if kind == "decoder" and len(h) > 1 else h.mean())


def valid_rows(kind: str, src_lens: np.ndarray, tgt_lens: np.ndarray, width: int | None = None) -> np.ndarray:
    """(B, width) bool (width: padded query length, default the longest): the rows whose entropy counts. Padding rows never count; nor does the decoder's first
    row, which has one key to attend to (entropy 0 in every model: it would only dilute the mean)."""
    src_lens, tgt_lens = np.asarray(src_lens), np.asarray(tgt_lens)
    lens = src_lens if kind == "encoder" else tgt_lens
    rows = np.arange(int(lens.max()) if width is None else width)[None, :] < lens[:, None]
    if kind == "decoder":
        rows[:, 0] = False
    return rows


def entropy_sums(maps: dict[str, np.ndarray], src_lens, tgt_lens) -> dict[str, tuple[np.ndarray, int]]:
    """{kind: (sum of row entropies per (layer, head), number of rows)} of one batch, to be accumulated."""
    out = {}
    for kind in KINDS:
        w = maps[kind]  # (L, B, H, Tq, Tk)
        rows = valid_rows(kind, src_lens, tgt_lens, w.shape[3])  # (B, Tq)
        h = row_entropy(w)  # (L, B, H, Tq)
        out[kind] = ((h * rows[None, :, None, :]).sum(axis=(1, 3)), int(rows.sum()))
    return out


class EntropyMeter:
    """Mean row entropy per kind, layer and head over many batches."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.rows: dict[str, int] = {}

    def add(self, maps: dict[str, np.ndarray], src_lens, tgt_lens) -> None:
        for kind, (s, n) in entropy_sums(maps, src_lens, tgt_lens).items():
            self.sums[kind] = self.sums.get(kind, 0) + s
            self.rows[kind] = self.rows.get(kind, 0) + n

    def means(self) -> dict[str, np.ndarray]:
        """{kind: (layers, heads) mean entropy in nats}."""
        return {k: self.sums[k] / max(self.rows[k], 1) for k in self.sums}
