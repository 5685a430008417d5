"""Static-shape greedy steps (CUDA graphs under CUDA) against the ONNX Loop: token identity and speed.

    python benchmarks/speed/static_identity.py --device cuda --variants base,fp16 --out $OUT/static_identity
    python benchmarks/speed/static_identity.py --tiny --device cuda       # a tiny random export: plumbing only

For each export: both translators decode test_2016_flickr greedy in length-sorted batches of --batch and the
first --latency-n sentences one by one; reported: sentences whose tokens are identical, the batch-1 median
latency and the throughput of each (second pass: the first captures the CUDA graphs), and whether ONNX Runtime
accepted CUDA graphs (``cuda_graph_note``). Same process for both (one engine at a time, same GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from compression.runtime.search import SearchConfig, length_batches  # noqa: E402


def decode(tr, ids: list[list[int]], batch: int) -> tuple[list[list[int]], float]:
    cfg, out = SearchConfig(), [[] for _ in ids]
    t0 = time.perf_counter()
    for idx in length_batches([len(x) for x in ids], batch):
        for i, h in zip(idx, tr.translate_ids([ids[i] for i in idx], cfg), strict=True):
            out[i] = h
    return out, time.perf_counter() - t0


def latency(tr, ids: list[list[int]]) -> float:
    cfg, times = SearchConfig(), []
    for x in ids:
        t0 = time.perf_counter()
        tr.translate_ids([x], cfg)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--variants", default="base,fp16")
    ap.add_argument("--tiny", action="store_true", help="a tiny random export instead (needs torch to build it)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latency-n", type=int, default=100)
    ap.add_argument("--out", default=None, help="output prefix for .json and .md (default: print only)")
    args = ap.parse_args()
    if args.device == "cuda":
        import torch  # noqa: F401  (loads the CUDA libraries onnxruntime-gpu needs)
    from compression.runtime.greedy import GreedyLoopTranslator
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.static_greedy import StaticGreedyTranslator
    from compression.train.data import load_split

    sources = [s for s, _ in load_split("test_2016_flickr")]
    if args.tiny:
        from tests.onnx_fixtures import export_tiny

        dirs = {p: export_tiny(tempfile.mkdtemp(), f"tiny-{p}", seed=2, precision=p) for p in ("fp32", "fp16")}
    else:
        dirs = {v: Path(args.export_dir) / v for v in args.variants.split(",")}
    rows = []
    for name, d in dirs.items():
        f = SessionFactory(device=args.device)
        loop, static = GreedyLoopTranslator(d, f), StaticGreedyTranslator(d, f)
        ids = loop.tokenizer.encode(sources)
        row = {"export": name, "provider": static.provider, "cuda_graphs": static.cuda_graphs,
               "note": static.cuda_graph_note}
        for label, tr in (("loop", loop), ("static", static)):
            hyps, first = decode(tr, ids, args.batch)
            hyps, second = decode(tr, ids, args.batch)
            row[f"{label}_sent_s"] = round(len(ids) / second, 1)
            row[f"{label}_first_pass_sent_s"] = round(len(ids) / first, 1)
            row[f"{label}_b1_ms"] = round(latency(tr, ids[: args.latency_n]), 2)
            row[f"{label}_hyps"] = hyps
        row["identical"] = sum(a == b for a, b in zip(row.pop("loop_hyps"), row.pop("static_hyps"), strict=True))
        row["sentences"], row["buckets"] = len(ids), len(static.buckets)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"command": "python " + " ".join(["benchmarks/speed/static_identity.py", *sys.argv[1:]]),
              "device": args.device, "batch": args.batch, "latency_n": args.latency_n, "rows": rows}
    lines = [f"# Static steps (CUDA graphs) vs the ONNX Loop, {args.device}", "", f"Command: `{result['command']}`", "",
             "| export | provider | CUDA graphs | identical | Loop b1 ms | static b1 ms | Loop sent/s | static sent/s |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['export']} | {r['provider']} | {r['note']} | {r['identical']}/{r['sentences']} | {r['loop_b1_ms']} | "
              f"{r['static_b1_ms']} | {r['loop_sent_s']} | {r['static_sent_s']} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
        Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
