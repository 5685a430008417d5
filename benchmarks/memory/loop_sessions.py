"""Resident memory of the graph-file translators the service runs: step-wise, the greedy Loop, the beam Loop.

    python benchmarks/memory/loop_sessions.py     # -> benchmarks/memory/loop_sessions.{json,md}

Per export (one fresh process each, 1 intra-op thread, the CPU): the RSS that loading the step-wise translator
(``OnnxTranslator``) adds, the RSS that loading the greedy Loop translator (what ``open_translator`` gives the
service on the CPU) adds, and what its first beam request adds (the beam Loop's session, built on first use).
RSS after a translation, heap trimmed, after a tiny session has loaded ONNX Runtime itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def child(directory: str, what: str) -> float:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from compression.runtime.greedy import GreedyLoopTranslator
    from compression.runtime.memory import trim_heap
    from compression.runtime.search import SearchConfig
    from compression.runtime.sessions import SessionFactory, argmax_graph
    from compression.runtime.translator import OnnxTranslator

    f = SessionFactory(threads=1)
    warm, _ = f.session(argmax_graph())
    warm.run(None, {"scores": np.zeros((1, 3), np.float32)})

    def settled() -> float:
        gc.collect()
        trim_heap()
        return rss_mib()

    before = settled()
    tr = OnnxTranslator(directory, f) if what == "stepwise" else GreedyLoopTranslator(directory, f)
    tr.translate(["A dog runs in the park."])
    loaded = settled()
    if what != "beam":
        return loaded - before
    tr.translate(["A dog runs in the park."], SearchConfig(beam=5))
    return settled() - loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--export-dir", default=str(ROOT / "build" / "onnx"))
    ap.add_argument("--exports", default="base,fp16,int8")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "memory" / "loop_sessions"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = []
    for name in args.exports.split(","):
        row: dict[str, object] = {"export": name}
        for what in ("stepwise", "loop", "beam"):
            out = subprocess.run([sys.executable, __file__, "--child", str(Path(args.export_dir) / name), what],
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row[what] = round(float(out), 1)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    command = "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(ROOT))] + sys.argv[1:])
    Path(f"{args.out}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = ["# RSS added by the graph-file translators (MiB, CPU, 1 thread)", "", f"Command: `{command}`", "",
             "| export | step-wise translator | greedy Loop translator | its first beam request adds |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['export']} | {r['stepwise']} | {r['loop']} | {r['beam']} |" for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
