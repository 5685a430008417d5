"""The study's attention analysis across variants: the comparison figure and the sharpness table.

A variant is opened by its manifest name through one of two backends that give the same maps (tested
to 1e-4): ``onnx`` reads an export (build/onnx: ``attention.onnx`` + ``OnnxTranslator``), ``torch``
reads the checkpoint or compact variant directory under models/ (``TorchAttention``
+ ``TorchTranslator``). Every variant of one figure is teacher-forced on the SAME output tokens, so the
maps differ only through the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from compression.runtime import catalogue
from compression.runtime import manifest as manifest_lib
from compression.runtime.attention_maps import (
    KIND_TITLES,
    KINDS,
    AttentionMaps,
    EntropyMeter,
    map_entropy,
    run_batch,
    with_eos,
)
from compression.runtime.search import SearchConfig, length_batches

MODEL_ROOTS = (catalogue.MODELS_ROOT,)  # the base and every variant (post-training ones: `make variants`)
BACKENDS = ("torch", "onnx")


@dataclass
class StudyVariant:
    """One variant opened for analysis: its attention source, a translator for its own outputs, metadata."""

    name: str
    meta: dict[str, Any]
    attention: Any  # AttentionSource with .maps(src_ids, output_ids) and .shape
    translator: Any  # .translate_ids(src_ids, SearchConfig) -> output ids
    tokenizer: Any
    ids: dict[str, int] = field(default_factory=dict)  # pad, start, eos, max_positions

    @property
    def ratio(self) -> float:
        return float(self.meta.get("ratio") or 1.0)

    @property
    def bleu(self) -> float | None:
        b = self.meta.get("bleu")
        return b if isinstance(b, int | float) else None

    def title(self) -> str:
        bleu = f", BLEU {self.bleu:.2f}" if self.bleu is not None else ""
        return f"{self.name} ({self.ratio:.1f}x{bleu})"


# -- opening variants --------------------------------------------------------------------------------
def open_torch(name: str, roots: Sequence[Path | str] = MODEL_ROOTS, device: str = "cpu") -> StudyVariant:
    from compression.analysis.attention_torch import TorchAttention
    from compression.train.checkpoint import load_model, read_metrics
    from compression.train.translator import TorchTranslator

    directory = catalogue.find_model(name, roots)
    meta = manifest_lib.read(directory)
    if meta.get("format") == catalogue.Format.COMPACT:
        from compression.compress.variants import load_variant

        model, tok, meta = load_variant(directory, device)
    else:
        model, tok = load_model(directory, device)  # verifies every file against the manifest
        test = read_metrics(directory).get("test_2016_flickr", {})
        meta = {**meta, "ratio": 1.0, "bleu": test.get("beam5", {}).get("bleu")}
    c = model.cfg
    ids = {"pad": c.pad_id, "start": c.decoder_start_id, "eos": c.eos_id, "max_positions": c.max_positions}
    return StudyVariant(name, meta, TorchAttention(model, tok), TorchTranslator(model, tok, device), tok, ids)


def open_onnx(name: str, root: Path | str | None = None) -> StudyVariant:
    from compression.runtime.attention import OnnxAttention
    from compression.runtime.catalogue import find_exported
    from compression.runtime.translator import open_translator

    directory = find_exported(name, root)
    att = OnnxAttention(directory)
    s = att.spec
    ids = {"pad": s.pad_id, "start": s.decoder_start_id, "eos": s.eos_id, "max_positions": s.max_positions}
    return StudyVariant(name, att.manifest, att, open_translator(directory), att.tokenizer, ids)


def open_variants(names: Sequence[str], backend: str, roots: Sequence[Path | str] = MODEL_ROOTS,
                  onnx_root: Path | str | None = None, device: str = "cpu") -> list[StudyVariant]:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    out = [open_torch(n, roots, device) if backend == "torch" else open_onnx(n, onnx_root) for n in names]
    vocab = {v.name: v.tokenizer.vocab_size for v in out}
    if len(set(vocab.values())) > 1:
        raise ValueError(f"the variants do not share one vocabulary {vocab}: compare variants of the same base model")
    return out


# -- one sentence, several variants --------------------------------------------------------------------
def greedy_ids(v: StudyVariant, src_ids: list[list[int]], batch_size: int = 64) -> list[list[int]]:
    """Greedy outputs, at most max_positions - 1 tokens so that output + EOS fits the position table."""
    cfg = SearchConfig(max_len=v.ids["max_positions"] - 1)
    out: list[list[int]] = [[] for _ in src_ids]
    for idx in length_batches([len(x) for x in src_ids], batch_size):
        for i, hyp in zip(idx, v.translator.translate_ids([src_ids[i] for i in idx], cfg), strict=True):
            out[i] = hyp
    return out


def sentence_comparison(variants: Sequence[StudyVariant], text: str, target: str | None = None
                        ) -> tuple[list[AttentionMaps], str, str]:
    """Every variant's maps of ``text``, all teacher-forced on ``target`` (default: the first variant's
    greedy translation). Returns (maps per variant, the target text, where it came from)."""
    first = variants[0]
    src_ids = first.tokenizer.encode([text])[0][: first.ids["max_positions"]]
    if target is None:
        y = greedy_ids(first, [src_ids])[0]
        target, origin = first.tokenizer.decode([y])[0], f"{first.name}'s greedy translation"
    else:
        y, origin = first.tokenizer.encode([target])[0], "the given target"
    y = with_eos(y, first.ids["eos"])[: first.ids["max_positions"]]
    return [v.attention.maps(src_ids, y) for v in variants], target, origin


def comparison_figure(variants: Sequence[StudyVariant], text: str, kinds: Sequence[str], layer: int, head: int,
                      target: str | None = None):
    """(matplotlib Figure, JSON record) of the same sentence, layer and head in every variant."""
    from compression.analysis.plots import comparison_figure as grid

    all_maps, target, origin = sentence_comparison(variants, text, target)
    panels, record = [], {"text": text, "target": target, "target_from": origin, "layer": layer, "head": head, "panels": []}
    for v, maps in zip(variants, all_maps, strict=True):
        for kind in kinds:
            w = maps.select(kind, layer, head, f"variant {v.name!r}")
            h = map_entropy(w, kind)
            panels.append((v.name, kind, w, f"{v.title()}\nentropy {h:.2f} nats"))
            record["panels"].append({"variant": v.name, "kind": kind, "entropy": round(h, 4), "ratio": v.ratio, "bleu": v.bleu})
    labels = {k: all_maps[0].labels(k) for k in kinds}
    title = (f'"{text}"  ->  "{target}"\nteacher-forced on {origin}; layer {layer}, head {head} '
             f"(rows: queries, columns: keys)")
    return grid(panels, labels, title), record


# -- sharpness over a test set -----------------------------------------------------------------------
def entropy_study(variants: Sequence[StudyVariant], pairs: Sequence[tuple[str, str]], targets: Sequence[str],
                  batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """Mean row entropy per kind, layer and head of every variant over ``pairs``, teacher-forced on the
    reference translations ("reference": the same tokens for every variant) and/or on each variant's own
    greedy output ("own"). Returns {variant: {target: {kind: (L, H) list}, "meta": ...}}."""
    results: dict[str, dict[str, Any]] = {}
    for v in tqdm(variants, desc="entropy", unit="variant"):
        tok, ids = v.tokenizer, v.ids
        src = [x[: ids["max_positions"]] for x in tok.encode([s for s, _ in pairs])]
        outputs = {}
        if "reference" in targets:
            outputs["reference"] = tok.encode([t for _, t in pairs])
        if "own" in targets:
            outputs["own"] = greedy_ids(v, src)
        res: dict[str, Any] = {"meta": {"ratio": v.ratio, "bleu": v.bleu, "method": v.meta.get("method"),
                                        "bits": v.meta.get("bits"), "sparsity": v.meta.get("sparsity")}}
        for target, ys in outputs.items():
            ys = [with_eos(y, ids["eos"])[: ids["max_positions"]] for y in ys]
            meter = EntropyMeter()
            for idx in length_batches([len(x) for x in src], batch_size):
                maps = run_batch(v.attention, [src[i] for i in idx], [ys[i] for i in idx], ids["pad"], ids["start"])
                meter.add(maps, [len(src[i]) for i in idx], [len(ys[i]) for i in idx])
            res[target] = {k: np.round(m, 5).tolist() for k, m in meter.means().items()}
        results[v.name] = res
    return results


TARGET_TITLES = {"reference": "teacher-forced on the reference translation (same tokens for every variant)",
                 "own": "teacher-forced on each variant's own greedy translation"}


def entropy_markdown(results: dict[str, dict[str, Any]], targets: Sequence[str], setting: str, command: str) -> str:
    """The sharpness table: mean entropy per kind (over layers and heads) and its change from the first variant."""
    names = list(results)
    ref = names[0]
    lines = ["# Attention sharpness per variant", "", setting, "", "```", command, "```", ""]
    for target in targets:
        lines += [f"## {TARGET_TITLES[target]}", "",
                  "| variant | method | ratio | BLEU | " + " | ".join(f"{KIND_TITLES[k]} H" for k in KINDS) + " | "
                  + " | ".join(f"{k} vs {ref}" for k in KINDS) + " |",
                  "|---|---|--:|--:|" + "--:|" * (2 * len(KINDS))]
        base = {k: float(np.mean(results[ref][target][k])) for k in KINDS}
        for name in names:
            r = results[name]
            means = {k: float(np.mean(r[target][k])) for k in KINDS}
            bleu = r["meta"]["bleu"]
            cells = [name, str(r["meta"]["method"]), f"{r['meta']['ratio']:.1f}x", f"{bleu:.2f}" if bleu is not None else "-"]
            cells += [f"{means[k]:.3f}" for k in KINDS]
            cells += [f"{100 * (means[k] / base[k] - 1):+.1f}%" if base[k] else "-" for k in KINDS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"Per layer (mean over heads), {TARGET_TITLES[target].split(' (')[0]}:", "",
                  "| variant | " + " | ".join(f"{k} L{i}" for k in KINDS for i in range(len(results[ref][target][k])))
                  + " |", "|---|" + "--:|" * sum(len(results[ref][target][k]) for k in KINDS)]
        for name in names:
            cells = [f"{np.mean(layer):.3f}" for k in KINDS for layer in results[name][target][k]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
