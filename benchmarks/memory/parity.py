"""Numerics of the in-memory int8 runtime form: test BLEU and greedy token parity with PyTorch.

For each variant: greedy (and with --beam, beam 5) test_2016_flickr BLEU through
``runtime_memory.load_memory_translator`` against the BLEU recorded in the variant's metrics.json, and
the number of sentences whose greedy token ids equal those of the PyTorch model of the variant
(``variants.load_variant``, exact dequantized weights). Writes benchmarks/memory/parity.json.

    PYTHONPATH=. python benchmarks/memory/parity.py [--variant NAME ...] [--beam] [--weights int8|fp16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VARIANTS = ["kmeans-4bit", "kmeans-2bit", "binary", "binary-2c", "binary-2c-g2", "pruned-90", "deep-compression",
            "deep-compression-4bit"]


def greedy_ids(translator, texts: list[str], batch_size: int) -> list[list[int]]:
    from compression.runtime.search import SearchConfig, length_batches

    ids = translator.tokenizer.encode(texts)
    out: list[list[int]] = [[] for _ in texts]
    for idx in length_batches([len(x) for x in ids], batch_size):
        for i, hyp in zip(idx, translator.translate_ids([ids[i] for i in idx], SearchConfig()), strict=True):
            out[i] = hyp
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", action="append", default=None)
    p.add_argument("--beam", action="store_true", help="also beam-5 BLEU (slow on 2 cores)")
    p.add_argument("--weights", default="int8", choices=["int8", "fp16", "fp32"])
    p.add_argument("--matmul", default="u8", choices=["u8", "dqmm", "integer", "nbits8"])
    p.add_argument("--nbits-accuracy", type=int, default=None, choices=[0, 1, 2, 3, 4],
                   help="with --matmul nbits8: MatMulNBits accuracy_level (4, the runtime's: int8 activations; "
                        "0: float activations)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=str(HERE / "parity.json"))
    args = p.parse_args()

    import sacrebleu
    import torch

    from compression.compress.variants import load_variant
    from compression.runtime.memory import load_memory_translator
    from compression.runtime.sessions import SessionFactory
    from compression.train.data import load_split
    from compression.train.evaluate import evaluate
    from compression.train.translator import TorchTranslator

    if args.nbits_accuracy is not None:
        import compression.runtime.graphs_int8 as graphs_int8

        graphs_int8.NBITS_ACCURACY = args.nbits_accuracy  # read when the graphs are built
    torch.set_num_threads(2)
    pairs = load_split("test_2016_flickr")
    src, refs = [s for s, _ in pairs], [t for _, t in pairs]
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in args.variant or VARIANTS:
        directory = ROOT / "models" / "variants" / name
        recorded = json.loads((directory / "metrics.json").read_text())["test_2016_flickr"]
        model, tok, _ = load_variant(directory)
        torch_ids = greedy_ids(TorchTranslator(model, tok), src, args.batch_size)
        t0 = time.perf_counter()
        tr = load_memory_translator(directory, args.weights, args.matmul, SessionFactory(threads=2))
        ort_ids = greedy_ids(tr, src, args.batch_size)
        seconds = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(torch_ids, ort_ids, strict=True))
        bleu = round(sacrebleu.corpus_bleu(tok.decode(ort_ids), [refs]).score, 2)
        torch_bleu = round(sacrebleu.corpus_bleu(tok.decode(torch_ids), [refs]).score, 2)
        row = {"weights": args.weights, "matmul": args.matmul, "sentences": len(src), "token_identical": same,
               **({"nbits_accuracy": args.nbits_accuracy} if args.nbits_accuracy is not None else {}),
               "greedy_bleu": bleu, "greedy_bleu_recorded": recorded["greedy"]["bleu"],
               "greedy_bleu_torch_cpu": torch_bleu, "greedy_seconds": round(seconds, 1)}
        if args.beam:
            row["beam5_bleu"] = evaluate(tr, "test_2016_flickr", (5,), batch_size=args.batch_size)["beam5"]["bleu"]
            row["beam5_bleu_recorded"] = recorded["beam5"]["bleu"]
        row["load_average"] = os.getloadavg()[0]
        acc = "" if args.nbits_accuracy is None else f"/acc{args.nbits_accuracy}"
        results[f"{name}/{args.weights}/{args.matmul}{acc}"] = row
        print(name, json.dumps(row), flush=True)
        out_path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
