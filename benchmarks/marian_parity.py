"""Issue 7's figures: the shipped model exported to MarianMT, run greedily by transformers and CTranslate2.

Usage: .venv/bin/python benchmarks/marian_parity.py [--n 1000] [--out benchmarks/marian_parity.json]

On the first N test_2016_flickr sentences: how many greedy translations are token-identical to tzip's
PyTorch ones, and the sacreBLEU of each engine. CTranslate2 runs twice: on the export as it is, and
on a copy whose pad row (the decoder's start embedding) is zeroed, the one thing its Marian loader
assumes and tzip's model does not.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import ctranslate2
import torch
from ctranslate2.converters import TransformersConverter
from transformers import MarianMTModel

from compression.interop.marian_export import export_marian
from compression.runtime.search import SearchConfig, pad_batch
from compression.train.checkpoint import load_model
from compression.train.data import load_split
from compression.train.evaluate import bleu_chrf
from compression.train.translator import TorchTranslator

BATCH = 32


def tzip_greedy(model, ids: list[list[int]], cfg: SearchConfig) -> list[list[int]]:
    translator = TorchTranslator(model, None)
    return [h for i in range(0, len(ids), BATCH) for h in translator.translate_ids(ids[i : i + BATCH], cfg)]


def hf_greedy(directory: Path, ids: list[list[int]], new, cfg: SearchConfig) -> list[list[int]]:
    hf = MarianMTModel.from_pretrained(directory).eval()
    pad, eos = hf.config.pad_token_id, hf.config.eos_token_id
    out = []
    for i in range(0, len(ids), BATCH):
        chunk = [[new(t) for t in x] for x in ids[i : i + BATCH]]
        src = torch.from_numpy(pad_batch(chunk, pad))
        limits = [cfg.limit(len(x)) for x in chunk]
        with torch.no_grad():
            gen = hf.generate(input_ids=src, attention_mask=(src != pad).long(), num_beams=1, do_sample=False,
                              max_new_tokens=max(limits), forced_eos_token_id=None)
        for row, limit in zip(gen[:, 1:].tolist(), limits, strict=True):
            out.append((row[: row.index(eos)] if eos in row else row)[:limit])
    return out


def ct2_greedy(directory: Path, work: Path, pieces: list[list[str]], max_len: int) -> list[list[str]]:
    TransformersConverter(str(directory)).convert(str(work), quantization="float32", force=True)
    translator = ctranslate2.Translator(str(work), device="cpu", compute_type="float32")
    results = translator.translate_batch(pieces, beam_size=1, max_decoding_length=max_len, max_batch_size=BATCH)
    return [r.hypotheses[0] for r in results]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/marian_parity.json")
    args = ap.parse_args()
    pairs = load_split("test_2016_flickr")[: args.n]
    srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
    model, tok = load_model()
    ids = tok.encode(srcs)
    # one fixed limit for every engine: CTranslate2 has max_decoding_length only
    cfg = SearchConfig(beam=1, max_len=256, max_len_a=0, max_len_b=256)
    pad = model.cfg.pad_id
    new = lambda i: i - 1 if i > pad else model.cfg.vocab_size - 1  # noqa: E731 (export moves pad to the end)
    src_pieces = [tok.pieces(s) + [tok.id_to_piece(tok.eos_id)] for s in srcs]
    result: dict = {"sentences": len(srcs), "split": "test_2016_flickr", "search": "greedy, max 256 tokens"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = tzip_greedy(model, ids, cfg)
        ours_pieces = [[tok.id_to_piece(i) for i in h] for h in ours]
        result["tzip_bleu"] = bleu_chrf(tok.decode(ours), refs)
        export_marian(model, tok, tmp / "hf")
        hf = hf_greedy(tmp / "hf", ids, new, cfg)
        result["transformers_identical"] = sum(a == [new(i) for i in b] for a, b in zip(hf, ours, strict=True))
        ct2 = ct2_greedy(tmp / "hf", tmp / "ct2", src_pieces, cfg.max_len)
        result["ctranslate2_identical"] = sum(a == b for a, b in zip(ct2, ours_pieces, strict=True))
        result["ctranslate2_bleu"] = bleu_chrf([tok.sp.decode_pieces(h) for h in ct2], refs)
        with torch.no_grad():
            model.shared.weight[pad].zero_()  # CTranslate2's assumption, made true
        ours0 = tzip_greedy(model, ids, cfg)
        export_marian(model, tok, tmp / "hf0")
        ct2_0 = ct2_greedy(tmp / "hf0", tmp / "ct2-0", src_pieces, cfg.max_len)
        result["zeroed_pad_row"] = {
            "tzip_bleu": bleu_chrf(tok.decode(ours0), refs),
            "identical_to_unmodified_tzip": sum(a == b for a, b in zip(ours0, ours, strict=True)),
            "ctranslate2_identical": sum(a == [tok.id_to_piece(i) for i in b] for a, b in zip(ct2_0, ours0, strict=True)),
        }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
