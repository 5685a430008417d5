"""CPU translation speed, one process per engine: PyTorch eager, ONNX Runtime step-wise and Loop, CTranslate2.

    python benchmarks/speed/engines.py --threads 1,2 --rounds 3      # -> benchmarks/speed/engines_cpu.{json,md}
    python benchmarks/speed/engines.py --engines ort-loop-int8,ct2-int8 --threads 2 --spin 0,1
    python benchmarks/speed/engines.py --engines ort-loop-int8,ct2-int8 --threads 1,2,4 --split groups,intra

Every measurement is a fresh subprocess (``--child``) that loads one engine, warms it up and measures
it, so no engine inherits another's thread pools, allocator state or CTranslate2's global settings.
Rounds are interleaved (round 1 of every engine, then round 2, ...) and each figure is the median
over rounds; the load average is recorded beside every child. Pinned with ``taskset -c 0..threads-1``
when taskset exists (``--no-pin`` to leave it).

ONNX Runtime's T threads are used one of two ways (``--split``): ``intra``, one session call per batch with T
intra-op threads; ``groups``, T single-threaded calls at once, each on its own group of the batch's rows
(``SessionFactory(threads=1, workers=T)``; only the Loop engines have row groups: the step-wise ones
always run ``intra``).

Per engine, test_2016_flickr, greedy, each sentence's own limit min(max_len, int(1.5 * src_len + 10)):
- batch-1 latency: the first --latency-n sentences one at a time; median ms per sentence;
- throughput: all --throughput-n sentences in length-sorted batches of --batch; sentences/s;
- token identity of the throughput run against a reference engine's (``REFERENCE``).
CTranslate2 takes one max length per batch (the batch's largest limit), so a sentence of a batch may
run past its own limit there; at batch 1 the limits are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostinfo import cpu_name  # noqa: E402

ENGINES = ("torch-fp32", "ort-step-fp32", "ort-step-int8", "ort-loop-fp32", "ort-loop-int8", "ct2-fp32", "ct2-int8")
EXPORT = {"fp32": "base", "int8": "int8"}  # export names under --export-dir
REFERENCE = {"torch-fp32": None, "ort-step-fp32": "torch-fp32", "ort-loop-fp32": "ort-step-fp32",
             "ort-step-int8": "torch-fp32", "ort-loop-int8": "ort-step-int8", "ct2-fp32": "torch-fp32",
             "ct2-int8": "torch-fp32"}


# -- the child: one engine, one measurement ------------------------------------------------------------
def load_engine(name: str, threads: int, export_dir: Path, ct2_dir: Path, spin: bool = True, split: str = "intra"):
    """A function list of source id lists -> list of output id lists (greedy), and the tokenizer."""
    from compression.runtime.search import SearchConfig

    cfg = SearchConfig(beam=1)
    kind, _, precision = name.rpartition("-")
    if kind == "torch":
        import torch

        from compression.train.checkpoint import load_model
        from compression.train.translator import TorchTranslator

        torch.set_num_threads(threads)
        model, tok = load_model(device="cpu")
        tr = TorchTranslator(model, tok, "cpu")
        return (lambda ids: tr.translate_ids(ids, cfg)), tok
    if kind in ("ort-step", "ort-loop"):
        from compression.runtime.greedy import GreedyLoopTranslator
        from compression.runtime.sessions import SessionFactory
        from compression.runtime.translator import OnnxTranslator

        cls = OnnxTranslator if kind == "ort-step" else GreedyLoopTranslator
        groups = split == "groups" and kind == "ort-loop"
        factory = SessionFactory(threads=1, workers=threads) if groups else SessionFactory(threads=threads, spin=spin)
        tr = cls(export_dir / EXPORT[precision], factory)
        return (lambda ids: tr.translate_ids(ids, cfg)), tr.tokenizer
    if kind == "ct2":
        from ct2_model import Ct2Translator

        from compression.runtime.tokenizer import Tokenizer

        tok = Tokenizer(export_dir / "base" / "tokenizer.model")
        tr = Ct2Translator(ct2_dir, tok, {"fp32": "float32", "int8": "int8"}[precision], threads)
        return (lambda ids: tr.translate_ids(ids, 1, max(cfg.limit(len(s)) for s in ids))), tok
    raise SystemExit(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def child(args) -> None:
    from compression.runtime.search import length_batches
    from compression.train.data import load_split

    fn, tok = load_engine(args.child, int(args.threads), Path(args.export_dir), Path(args.ct2_dir),
                          os.environ.get("TZIP_BENCH_SPIN", "1") != "0", args.split)
    ids = tok.encode([s for s, _ in load_split("test_2016_flickr")[: args.throughput_n]])
    load_before = os.getloadavg()[0]
    fn(ids[:8])
    for s in ids[:4]:
        fn([s])
    times = []
    for s in ids[: args.latency_n]:
        t0 = time.perf_counter()
        fn([s])
        times.append((time.perf_counter() - t0) * 1000)
    out: list[list[int]] = [[] for _ in ids]
    t0 = time.perf_counter()
    for idx in length_batches([len(s) for s in ids], args.batch):
        for i, hyp in zip(idx, fn([ids[i] for i in idx]), strict=True):
            out[i] = hyp
    seconds = time.perf_counter() - t0
    print(json.dumps({"latency_ms": statistics.median(times), "sent_s": len(ids) / seconds,
                      "load1": [round(load_before, 2), round(os.getloadavg()[0], 2)], "hyps": out}))


# -- the parent: interleaved rounds of children ----------------------------------------------------------
def run_child(engine: str, threads: int, spin: int, split: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--threads", str(threads), "--split", split,
           "--latency-n", str(args.latency_n),
           "--throughput-n", str(args.throughput_n), "--batch", str(args.batch), "--export-dir", args.export_dir,
           "--ct2-dir", args.ct2_dir]
    if args.pin and shutil.which("taskset"):
        first = args.first_core
        cmd = ["taskset", "-c", f"{first}-{first + min(threads, os.cpu_count() or 1) - 1}", *cmd]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TZIP_BENCH_SPIN": str(spin), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{engine} (threads {threads}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensure_ct2(ct2_dir: Path) -> None:
    if (ct2_dir / "model.bin").exists():
        return
    from ct2_model import convert

    from compression.train.checkpoint import load_model

    model, tok = load_model(device="cpu")
    convert(model, tok, ct2_dir)


def markdown(result: dict) -> str:
    lines = [f"# CPU translation speed, one process per engine ({result['cpu']}, {result['machine']})", "",
             f"Command: `{result['command']}`  ",
             f"Load average (1 min) before/after: {result['loadavg_before']} / {result['loadavg_after']}; "
             f"versions: {result['versions']}; pinned: {result['pinned']}.  ",
             f"test_2016_flickr, greedy. Latency: median ms/sentence over the first {result['latency_n']} sentences at "
             f"batch 1. Throughput: {result['sentences']} sentences in length-sorted batches of {result['batch']}. "
             f"Medians over {result['rounds']} interleaved rounds (each a fresh process); min-max in brackets.", "",
             "| engine | threads | split | spin | batch-1 ms | batch-32 sent/s | sent/s / CT2 int8 | ms / CT2 int8 "
             "| sent/s / CT2 same precision | identical (reference) | load1 during |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ct2(r: dict, precision: str) -> dict | None:
        return next((c for c in result["rows"] if c["engine"] == f"ct2-{precision}" and c["threads"] == r["threads"]), None)

    for r in result["rows"]:
        c8, same = ct2(r, "int8"), ct2(r, r["engine"].rpartition("-")[2])
        ort = r["engine"].startswith("ort")
        cells = [r["engine"], r["threads"], r.get("split", "intra") if ort else "",
                 r["spin"] if ort and r.get("split") != "groups" else "",
                 f"{r['latency_ms']:.2f} [{min(r['latency_all']):.1f}-{max(r['latency_all']):.1f}]",
                 f"{r['sent_s']:.1f} [{min(r['sent_s_all']):.0f}-{max(r['sent_s_all']):.0f}]",
                 f"{r['sent_s'] / c8['sent_s']:.2f}" if c8 else "",
                 f"{r['latency_ms'] / c8['latency_ms']:.2f}" if c8 else "",
                 f"{r['sent_s'] / same['sent_s']:.2f}" if same else "",
                 r.get("identical", ""), f"{min(r['load1']):.1f}-{max(r['load1']):.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def parent(args) -> None:
    import onnxruntime

    engines = args.engines.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    spins = [int(s) for s in args.spin.split(",")]
    if any(e.startswith("ct2") for e in engines):
        ensure_ct2(Path(args.ct2_dir))
    splits = args.split.split(",")
    configs = []  # (engine, threads, spin, split): spin only matters to intra-op threads, split only to Loop engines
    for t in threads:
        for e in engines:
            for p in (splits if e.startswith("ort-loop") and t > 1 else ["intra"]):
                configs += [(e, t, s, p) for s in (spins if e.startswith("ort") and p == "intra" and t > 1 else spins[:1])]
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    for rnd in range(args.rounds):
        for c in configs:
            r = run_child(*c, args)
            runs[c].append(r)
            print(f"round {rnd + 1}/{args.rounds} {c}: {r['latency_ms']:.2f} ms, {r['sent_s']:.1f} sent/s, "
                  f"load {r['load1']}", file=sys.stderr, flush=True)
    rows = []
    for (engine, t, s, p), rs in runs.items():
        row = {"engine": engine, "threads": t, "spin": s, "split": p if engine.startswith("ort-loop") else "intra",
               "latency_ms": statistics.median(r["latency_ms"] for r in rs), "latency_all": [r["latency_ms"] for r in rs],
               "sent_s": statistics.median(r["sent_s"] for r in rs), "sent_s_all": [r["sent_s"] for r in rs],
               "load1": [x for r in rs for x in r["load1"]], "hyps": rs[0]["hyps"]}
        rows.append(row)
    for row in rows:  # identity of the first round's throughput outputs with the reference engine's
        ref = next((r for r in rows if r["engine"] == REFERENCE.get(row["engine"]) and r["threads"] == row["threads"]), None)
        if ref is not None:
            same = sum(a == b for a, b in zip(row["hyps"], ref["hyps"], strict=True))
            row["identical"] = f"{same}/{len(row['hyps'])} ({ref['engine']})"
    sentences = len(rows[0]["hyps"])
    for row in rows:
        row.pop("hyps")
    versions = {"onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    try:
        import ctranslate2

        versions["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        pass
    result = {"command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
              "cpu": cpu_name(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "pinned": bool(args.pin and shutil.which("taskset")), "loadavg_before": loadavg_before,
              "loadavg_after": [round(x, 2) for x in os.getloadavg()], "rounds": args.rounds,
              "latency_n": args.latency_n, "sentences": sentences, "batch": args.batch, "versions": versions, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{out}.md").write_text(markdown(result))
    print(markdown(result))



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--spin", default="1", help="ONNX Runtime worker spinning, comma-separated 0/1 (others ignore it)")
    ap.add_argument("--split", default="groups", help="how ONNX Runtime Loop engines use T > 1 threads, comma-separated: "
                    "groups (T single-threaded calls on row groups) | intra (one call, T intra-op threads)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-n", type=int, default=100)
    ap.add_argument("--throughput-n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--ct2-dir", default=str(REPO / "build" / "ct2"))
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--first-core", type=int, default=0, help="pin children to cores FIRST..FIRST+threads-1")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "engines_cpu"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    child(args) if args.child else parent(args)


if __name__ == "__main__":
    main()
