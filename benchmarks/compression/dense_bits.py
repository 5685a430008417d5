"""How many bits the vectors no method compresses (biases, LayerNorm, final_logits_bias) need: a shipped
variant's greedy BLEU with those vectors rounded to a per-tensor affine grid of B bits (compact.grid_encode),
applied after training, on a Multi30k split (val by default: the selection set).

    python benchmarks/compression/dense_bits.py --variant dc-s952-b1g --bits 0,6,5,4 \
        --out benchmarks/compression/dense_bits.json

Bits 0 = the vectors as stored. Nothing is written without --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="dc-s952-b1g", help="a variant under models/variants (by its metadata name)")
    p.add_argument("--bits", default="0,6,5,4", help="comma-separated grid widths; 0 = as stored")
    p.add_argument("--split", default="val", choices=["val", "test_2016_flickr"])
    p.add_argument("--limit", type=int, default=None, help="first N sentences only")
    p.add_argument("--out", default=None, help="write the JSON here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from compression.compress.variants import load_variant_translator
    from compression.runtime import compact
    from compression.train.evaluate import evaluate

    translator = load_variant_translator(args.variant, "cpu")
    model = translator.model
    vectors = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 1 or "logits_bias" in n}
    results = []
    for bits in (int(b) for b in args.bits.split(",")):
        with torch.no_grad():
            for n, a in vectors.items():
                v = a if bits == 0 else torch.from_numpy(compact.grid_decode(compact.grid_encode(a.numpy(), bits)))
                model.get_parameter(n).copy_(v)
        t0 = time.perf_counter()
        score = evaluate(translator, args.split, (1,), args.limit)["greedy"]["bleu"]
        results.append({"bits": bits, "greedy_bleu": score, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(results[-1]), flush=True)
    out = {"variant": args.variant, "split": args.split, "limit": args.limit,
           "vectors": len(vectors), "values": int(sum(int(np.prod(a.shape)) for a in vectors.values())),
           "results": results,
           "command": "python benchmarks/compression/dense_bits.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
