"""ONNX Runtime attention graph vs PyTorch ``last_weights`` on the shipped variants: the largest absolute
difference of any attention weight over the first N test sentences, teacher-forced on the references.

    python -m compression export --variant base --variant kmeans-8bit-pt --variant kmeans-4bit --variant binary \
        --variant pruned-90 --out build/onnx
    python benchmarks/attention/parity.py --onnx-root build/onnx --limit 200 --out benchmarks/attention/parity.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compression.analysis.attention_study import MODEL_ROOTS, open_onnx, open_torch
from compression.runtime.attention_maps import KINDS, run_batch, with_eos
from compression.runtime.search import length_batches
from compression.train.data import load_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="base,kmeans-8bit-pt,kmeans-4bit,binary,pruned-90")
    p.add_argument("--onnx-root", default="build/onnx")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default="benchmarks/attention/parity.json")
    args = p.parse_args()
    pairs = load_split("test_2016_flickr")[: args.limit]
    result = {}
    for name in tqdm(args.variants.split(","), desc="parity", unit="variant"):
        ref, ort = open_torch(name, MODEL_ROOTS), open_onnx(name, args.onnx_root)
        tok, ids = ref.tokenizer, ref.ids
        src = tok.encode([s for s, _ in pairs])
        ys = [with_eos(y, ids["eos"]) for y in tok.encode([t for _, t in pairs])]
        worst = dict.fromkeys(KINDS, 0.0)
        for idx in length_batches([len(x) for x in src], args.batch_size):
            s, y = [src[i] for i in idx], [ys[i] for i in idx]
            a = run_batch(ref.attention, s, y, ids["pad"], ids["start"])
            b = run_batch(ort.attention, s, y, ids["pad"], ids["start"])
            for k in KINDS:
                worst[k] = max(worst[k], float(np.abs(a[k] - b[k]).max()))
        result[name] = {"storage": ort.meta.get("storage"), "max_abs_diff": worst}
        print(name, result[name])
    Path(args.out).write_text(json.dumps({"sentences": len(pairs), "split": "test_2016_flickr", "results": result},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
