"""Resident memory and CPU speed of served variants: today's exports vs the in-memory int8 runtime form.

Every measurement runs in its own process (``--child``), rounds are interleaved (every config once per
round, the order rotated each round), and the table reports medians over rounds. Per process:

1. import onnxruntime and the runtime, load the tokenizer, and run a tiny model once (the floor of
   Python + ONNX Runtime is then excluded);
2. RSS before (VmRSS of /proc/self/status), load the variant, RSS after: ``rss_added_mib``, ``load_s``;
   with ``--warm`` another model is first loaded the same way, run once and dropped (another stored variant for a
   stored one, the other export for an export), so the runtime's one-time costs (lazily imported code, ONNX
   Runtime's first kernels of each type, first arenas) are in the floor, as in a service that already serves a
   variant; without it they are counted in the first model's figure;
3. batch-1 latency: the median of translating 16 test sentences one at a time (greedy);
4. batch-32 throughput: 128 test sentences, batch 32, greedy (sentences/s);
5. ``peak_rss_mib``: VmHWM at the end (the whole process, as the issue's figures).

    PYTHONPATH=. python benchmarks/memory/bench.py [--rounds 3] [--study main|options]

Writes benchmarks/memory/results-<study>.json (every run, the medians, load averages) and the table as .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXPORTS = ROOT / "build" / "onnx"  # `python -m compression export --variant base --variant int8 --out build/onnx`
VARIANTS = ["kmeans-4bit", "kmeans-2bit", "binary", "binary-2c", "binary-2c-g2", "pruned-90", "deep-compression",
            "deep-compression-4bit"]


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(spec: dict) -> dict:
    import numpy as np
    import onnxruntime as ort

    from compression.runtime import onnx_format as fmt
    from compression.runtime.graphs_int8 import DEFAULT_MATMUL, build_runtime_graphs, read_variant
    from compression.runtime.memory import MemoryOptions, MemoryTranslator, trim_heap
    from compression.runtime.sessions import SessionFactory, argmax_graph
    from compression.runtime.tokenizer import Tokenizer
    from compression.runtime.translator import OnnxTranslator
    from compression.train.data import load_split

    threads = spec["threads"]
    tok = Tokenizer(ROOT / "models" / "base" / fmt.TOKENIZER_FILE)
    src = [s for s, _ in load_split("test_2016_flickr")]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    warm = ort.InferenceSession(argmax_graph(), so, providers=["CPUExecutionProvider"])  # the runtime's floor
    warm.run(None, {"scores": np.zeros((2, 3), np.float32)})
    if spec.get("warm"):
        warm_up(spec, tok, threads)
    before = rss_mib()
    t0 = time.perf_counter()
    if spec["source"] == "export":
        directory = Path(spec.get("exports", EXPORTS)) / spec["name"]
        if spec.get("loop"):  # greedy in one ONNX Loop run per batch, as the service runs graph-file exports
            from compression.runtime.greedy import GreedyLoopTranslator

            tr = GreedyLoopTranslator(directory, SessionFactory(threads=threads))
        else:
            tr = OnnxTranslator(directory, SessionFactory(threads=threads, greedy_loop=False))
    else:
        opts = MemoryOptions(prepacking=spec.get("prepacking", True), arena=spec.get("arena", "default"),
                             share=spec.get("share", True))
        path = ROOT / "models" / ("base" if spec["name"] == "base" else f"variants/{spec['name']}")
        cfg, records = read_variant(path)
        graphs = build_runtime_graphs(cfg, records, spec.get("weights", "int8"), spec.get("matmul", DEFAULT_MATMUL))
        del records
        trim_heap()
        tr = MemoryTranslator(graphs, tok, spec["name"], SessionFactory(threads=threads, stored_loop=bool(spec.get("loop"))),
                              options=opts)
        del graphs
    load_s = time.perf_counter() - t0
    added = rss_mib() - before
    tr.translate(src[:4], batch_size=4)  # first run: kernels' lazy state
    lat = []
    for s in src[100:116]:
        t = time.perf_counter()
        tr.translate([s], batch_size=1)
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    tr.translate(src[200:328], batch_size=32)
    b32 = 128 / (time.perf_counter() - t)
    return {"rss_added_mib": round(added, 1), "peak_rss_mib": round(rss_mib("VmHWM"), 1),
            "rss_after_serving_mib": round(rss_mib(), 1), "load_s": round(load_s, 3),
            "b1_ms": round(1000 * statistics.median(lat), 2), "b32_sent_per_s": round(b32, 1)}


def warm_up(spec: dict, tok, threads: int) -> None:
    """Load another model through the same path as ``spec``, translate one sentence, drop it."""
    import gc

    from compression.runtime.memory import load_memory_translator, trim_heap
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.translator import OnnxTranslator

    if spec["source"] == "export":
        other = "int8" if spec["name"] != "int8" else "base"
        tr = OnnxTranslator(Path(spec.get("exports", EXPORTS)) / other, SessionFactory(threads=threads, greedy_loop=False))
    else:
        other = "kmeans-2bit" if spec["name"] != "kmeans-2bit" else "binary"
        tr = load_memory_translator(ROOT / "models" / "variants" / other, spec.get("weights", "int8"),
                                    sessions=SessionFactory(threads=threads))
    tr.translate(["A man is riding a bike."], batch_size=1)
    del tr
    gc.collect()
    trim_heap()


def configs(study: str, thread_counts: list[int], variants: list[str]) -> list[dict]:
    out = []
    if study == "main":
        for threads in thread_counts:
            out += [{"label": "base fp32 (export)", "source": "export", "name": "base", "threads": threads},
                    {"label": "int8 (export)", "source": "export", "name": "int8", "threads": threads},
                    {"label": "base (int8 runtime)", "source": "memory", "name": "base", "threads": threads}]
            out += [{"label": f"{v} (int8 runtime)", "source": "memory", "name": v, "threads": threads} for v in variants]
            if "kmeans-4bit" in variants:  # the other lowerings, same weights: what the default gains
                out += [{"label": f"kmeans-4bit ({m})", "source": "memory", "name": "kmeans-4bit", "threads": threads,
                         "matmul": m} for m in ("nbits8", "dqmm")]
    elif study == "options":  # what each setting changes, on one compressed variant, 2 threads
        v = "kmeans-4bit"
        for matmul in ("u8", "nbits8", "dqmm", "integer"):
            out.append({"label": f"{v} {matmul}", "source": "memory", "name": v, "threads": 2, "matmul": matmul})
        out += [{"label": f"{v} nbits8 no-prepack", "source": "memory", "name": v, "threads": 2, "prepacking": False},
                {"label": f"{v} dqmm no-prepack", "source": "memory", "name": v, "threads": 2, "matmul": "dqmm",
                 "prepacking": False},
                {"label": f"{v} nbits8 arena off", "source": "memory", "name": v, "threads": 2, "arena": "off"},
                {"label": f"{v} nbits8 weights embedded per session", "source": "memory", "name": v, "threads": 2,
                 "share": False},
                {"label": f"{v} nbits8 arena shared", "source": "memory", "name": v, "threads": 2, "arena": "shared"},
                {"label": f"{v} fp32 dense in memory", "source": "memory", "name": v, "threads": 2, "weights": "fp32"}]
    else:
        raise ValueError(f"unknown study {study!r}")
    return out


def markdown(result: dict) -> str:
    """The medians as a table, with the command, the load average and the ratios to the fp32 base export."""
    warm = ("RSS added after another model was loaded, run and dropped in the same process (`--warm`)"
            if result.get("warm") else "RSS added by the first model the process loads")
    decode = ("Greedy as one ONNX Loop run per batch (`--loop`)" if result.get("loop")
              else "Greedy as one session run per token")
    lines = [f"# Resident memory and CPU speed ({result['study']} study, {result['rounds']} interleaved rounds, medians)", "",
             warm + ". " + decode + ".", "",
             f"Command: `{result['command']}`", "",
             f"onnxruntime {result['onnxruntime']}, {result['cpus']} CPUs, cores {result['cores'] or 'not pinned'}, "
             f"load average min / median / max {result['load_average']['min']:.2f} / "
             f"{result['load_average']['median']:.2f} / {result['load_average']['max']:.2f}", "",
             "| config | threads | RSS added MiB | x base | peak RSS MiB | load s | b1 ms | b32 sent/s | x base |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    med = result["medians"]
    for key, m in med.items():
        label, threads = key.rsplit(" t", 1)
        base = med.get(f"base fp32 (export) t{threads}")
        rss_x = f"{m['rss_added_mib'] / base['rss_added_mib']:.2f}" if base else ""
        b32_x = f"{m['b32_sent_per_s'] / base['b32_sent_per_s']:.2f}" if base else ""
        lines.append(f"| {label} | {threads} | {m['rss_added_mib']:.1f} | {rss_x} | {m['peak_rss_mib']:.1f} | "
                     f"{m['load_s']:.2f} | {m['b1_ms']:.1f} | {m['b32_sent_per_s']:.1f} | {b32_x} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--study", default="main", choices=["main", "options"])
    p.add_argument("--threads", default="1,2", help="main study: comma-separated intra-op thread counts")
    p.add_argument("--variants", default=",".join(VARIANTS), help="compressed variants (models/variants) to serve")
    p.add_argument("--cores", default=None, help="pin every child to these cores (taskset -c LIST), e.g. 0-3")
    p.add_argument("--exports", default=str(EXPORTS.relative_to(ROOT)), help="where the base and int8 exports are")
    p.add_argument("--graph-exports", default="", help="more exports under --exports to serve from their graph files")
    p.add_argument("--loop", action="store_true",
                   help="greedy as one ONNX Loop run per batch for every config (exports: the service's Loop translator; "
                        "stored forms: TZIP_STORED_LOOP); default: one session run per token")
    p.add_argument("--warm", action="store_true",
                   help="load, run and drop another model in each process before the measured one (see above)")
    p.add_argument("--out", default=None, help="result file (default benchmarks/memory/results-<study>.json)")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    todo = configs(args.study, [int(t) for t in args.threads.split(",")], args.variants.split(","))
    for name in filter(None, args.graph_exports.split(",")):  # e.g. a compact variant exported with --graphs
        todo += [{"label": f"{name} (graph files)", "source": "export", "name": name, "threads": int(t)}
                 for t in args.threads.split(",")]
    exports = (ROOT / args.exports).resolve()  # relative: to the repository, wherever it is run from
    for c in todo:  # relative to the repository (the children run there): no machine's paths in the results
        c["exports"] = str(exports.relative_to(ROOT)) if exports.is_relative_to(ROOT) else str(exports)
        c["warm"] = args.warm
        c["loop"] = args.loop
    pin = ["taskset", "-c", args.cores] if args.cores else []
    runs: dict[str, list[dict]] = {c["label"] + f" t{c['threads']}": [] for c in todo}
    loads = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    for r in range(args.rounds):
        order = todo[r % len(todo):] + todo[: r % len(todo)]  # rotate: no config always runs first
        for c in order:
            loads.append(os.getloadavg()[0])
            res = subprocess.run([*pin, sys.executable, __file__, "--child", json.dumps(c)], capture_output=True, text=True,
                                 env=env, cwd=ROOT)
            if res.returncode:
                raise RuntimeError(f"{c['label']}: {res.stderr[-2000:]}")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            runs[c["label"] + f" t{c['threads']}"].append(row)
            print(r, c["label"], c["threads"], row, flush=True)
    medians = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}
    result = {"study": args.study, "rounds": args.rounds, "warm": args.warm, "loop": args.loop, "cpus": os.cpu_count(), "cores": args.cores,
              "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
              "load_average": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
              "onnxruntime": __import__("onnxruntime").__version__, "configs": todo, "medians": medians, "runs": runs}
    out = Path(args.out) if args.out else HERE / f"results-{args.study}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
