"""Greedy tokens of stored variants decoded as one ONNX Loop (TZIP_STORED_LOOP) against the step-wise decoder,
on test_2016_flickr (every sentence, batches of 32), plus their batch-32 throughput in alternating rounds.

    python benchmarks/speed/stored_loop_identity.py --variants kmeans-4bit,binary,deep-compression \
        --out benchmarks/speed/stored_loop_identity.json

Nothing is written without --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="kmeans-4bit,binary,deep-compression", help="comma-separated, under models/variants")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (medians)")
    p.add_argument("--out", default=None, help="write the JSON here")
    args = p.parse_args(argv)

    from compression.runtime.memory import load_memory_translator
    from compression.runtime.sessions import SessionFactory
    from compression.train.data import load_split

    src = [s for s, _ in load_split("test_2016_flickr")]
    rows = []
    for name in args.variants.split(","):
        directory = ROOT / "models" / "variants" / name
        step = load_memory_translator(directory, sessions=SessionFactory(threads=args.threads))
        loop = load_memory_translator(directory, sessions=SessionFactory(threads=args.threads, stored_loop=True))
        a, b = step.translate(src, batch_size=32), loop.translate(src, batch_size=32)
        speed: dict[str, list[float]] = {"step": [], "loop": []}
        for _ in range(args.rounds):
            for label, tr in (("step", step), ("loop", loop)):
                t0 = time.perf_counter()
                tr.translate(src[:320], batch_size=32)
                speed[label].append(320 / (time.perf_counter() - t0))
        rows.append({"variant": name, "sentences": len(src), "identical": sum(x == y for x, y in zip(a, b, strict=True)),
                     "b32_sent_s_step": round(statistics.median(speed["step"]), 1),
                     "b32_sent_s_loop": round(statistics.median(speed["loop"]), 1)})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        import os

        Path(args.out).write_text(json.dumps({"rows": rows, "threads": args.threads, "rounds": args.rounds,
                                              "load_average": os.getloadavg()[0],
                                              "command": "python benchmarks/speed/stored_loop_identity.py "
                                              + " ".join(argv if argv is not None else sys.argv[1:])}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
