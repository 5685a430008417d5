"""Token identity of the greedy Loop (one call, and row groups) with step-wise decoding, on test_2016_flickr.

    python benchmarks/speed/loop_identity.py      # -> benchmarks/speed/loop_identity.{json,md}

Step-wise decoding (``OnnxTranslator``: one session run per token, the NumPy search) is the reference:
it is what the Loop replaces and what PyTorch greedy is checked against (parity_variants.md). Per export
(fp32 ``base``, ``int8``) and batch size (1, and length-sorted batches of 32 as in engines.py), the
sentences whose tokens equal the reference's. Single-threaded sessions throughout (row groups run
concurrently, each on one thread).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from compression.runtime.greedy import GreedyLoopTranslator  # noqa: E402
from compression.runtime.search import LengthBatchedTranslator, SearchConfig, length_batches  # noqa: E402
from compression.runtime.sessions import SessionFactory  # noqa: E402
from compression.runtime.translator import OnnxTranslator  # noqa: E402
from compression.train.data import load_split  # noqa: E402


def decode(tr: LengthBatchedTranslator, ids: list[list[int]], batch: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in ids]
    for idx in length_batches([len(s) for s in ids], batch):
        for i, hyp in zip(idx, tr.translate_ids([ids[i] for i in idx], SearchConfig()), strict=True):
            out[i] = hyp
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--exports", default="base,int8")
    ap.add_argument("--workers", default="2,4", help="row-group counts to check beside one call")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "loop_identity"))
    args = ap.parse_args()
    src = [s for s, _ in load_split("test_2016_flickr")]
    rows = []
    for name in args.exports.split(","):
        directory = Path(args.export_dir) / name
        step = OnnxTranslator(directory, SessionFactory(threads=1))
        ids = step.tokenizer.encode(src)
        loops = {1: GreedyLoopTranslator(directory, SessionFactory(threads=1))}
        loops |= {w: GreedyLoopTranslator(directory, SessionFactory(threads=1, workers=w))
                  for w in map(int, args.workers.split(","))}
        for batch in (1, 32):
            ref = decode(step, ids, batch)
            for w, tr in loops.items():
                if batch == 1 and w > 1:
                    continue  # a batch of one is one group
                same = sum(a == b for a, b in zip(decode(tr, ids, batch), ref, strict=True))
                rows.append({"export": name, "batch": batch, "row_groups": w, "identical": same, "sentences": len(ids)})
                print(rows[-1], file=sys.stderr, flush=True)
    result = {"command": "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:]),
              "python": platform.python_version(), "rows": rows}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Greedy Loop vs step-wise decoding: identical sentences, test_2016_flickr", "",
             f"Command: `{result['command']}`", "",
             "| export | batch | row groups | identical to step-wise |", "|---|---|---|---|"]
    lines += [f"| {r['export']} | {r['batch']} | {r['row_groups']} | {r['identical']}/{r['sentences']} |" for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
