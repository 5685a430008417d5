"""Where a greedy Loop batch spends its time: ONNX Runtime's profiler, per operator type, one thread.

    python benchmarks/speed/loop_profile.py     # -> benchmarks/speed/loop_profile.{json,md}

Decodes the first --batches length-sorted batches of 32 of test_2016_flickr with the Loop translator
(``SessionFactory(threads=1)``), with profiling on, and sums the kernel time of every node of the Loop
session by operator type (nodes inside the Loop bodies included; the ``Loop`` rows themselves include
their bodies, so they are left out of the shares).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import onnxruntime as ort  # noqa: E402

from compression.runtime.greedy import GreedyLoopTranslator  # noqa: E402
from compression.runtime.search import SearchConfig, length_batches  # noqa: E402
from compression.runtime.sessions import SessionFactory  # noqa: E402
from compression.train.data import load_split  # noqa: E402


@dataclass(frozen=True)
class Profiled(SessionFactory):
    prefix: str = ""

    def options(self) -> ort.SessionOptions:
        so = super().options()
        so.enable_profiling, so.profile_file_prefix = True, self.prefix
        return so


def profile(directory: Path, batches: int, work: Path) -> dict[str, dict[str, float]]:
    factory = Profiled(threads=1, prefix=str(work / directory.name))
    tr = GreedyLoopTranslator(directory, factory)
    ids = tr.tokenizer.encode([s for s, _ in load_split("test_2016_flickr")])
    for idx in list(length_batches([len(s) for s in ids], 32))[:batches]:
        tr.translate_ids([ids[i] for i in idx], SearchConfig())
    events = json.loads(Path(tr.session.end_profiling()).read_text())
    us: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["args"].get("op_name") != "Loop":
            us[e["args"]["op_name"]] += e["dur"]
            calls[e["args"]["op_name"]] += 1
    total = sum(us.values())
    return {op: {"ms": d / 1000, "share": d / total, "calls": calls[op]} for op, d in us.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--exports", default="int8,base")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "loop_profile"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = {name: profile(Path(args.export_dir) / name, args.batches, Path(work)) for name in args.exports.split(",")}
    command = "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:])
    Path(f"{args.out}.json").write_text(json.dumps({"command": command, "ops": result}, indent=2) + "\n")
    lines = [f"# Greedy Loop, batch 32, one thread: kernel time per operator type (first {args.batches} batches)", "",
             f"Command: `{command}`", ""]
    for name, ops in result.items():
        lines += [f"## {name}", "", "| operator | ms | share | calls |", "|---|---|---|---|"]
        lines += [f"| {op} | {v['ms']:.1f} | {100 * v['share']:.1f}% | {v['calls']} |" for op, v in list(ops.items())[:14]]
        lines.append("")
    Path(f"{args.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
