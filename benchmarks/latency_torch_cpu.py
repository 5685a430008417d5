"""Issue 2's figure: one sentence translated greedily by the shipped PyTorch model on this CPU.

Usage: .venv/bin/python benchmarks/latency_torch_cpu.py [--n 100] [--out benchmarks/latency_torch_cpu.json]
Median over the first N test_2016_flickr sentences, batch size 1, after 5 warm-up sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from compression.runtime.search import SearchConfig
from compression.train.checkpoint import load_model
from compression.train.data import load_split
from compression.train.translator import TorchTranslator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/latency_torch_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load_model()
    tr = TorchTranslator(model, tok)
    sents = [s for s, _ in load_split("test_2016_flickr")[: args.n]]
    load_before = [round(x, 2) for x in os.getloadavg()]
    for s in sents[:5]:
        tr.translate([s], SearchConfig(beam=1))
    times = []
    for s in sents:
        t0 = time.perf_counter()
        tr.translate([s], SearchConfig(beam=1), batch_size=1)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=20)
    result = {"what": "PyTorch eager fp32, greedy, batch 1, one sentence per call", "sentences": len(sents),
              "median_ms": round(statistics.median(times), 1), "p95_ms": round(q[18], 1),
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__,
              "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]], "command": "python benchmarks/latency_torch_cpu.py"}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
