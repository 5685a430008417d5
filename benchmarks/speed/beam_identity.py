"""Beam search in one ONNX Loop run (``graphs_beam``) against step-wise beam search, on test_2016_flickr.

    python benchmarks/speed/beam_identity.py     # -> benchmarks/speed/beam_identity.{json,md}
    python benchmarks/speed/beam_identity.py --device cuda --exports base,fp16 --out $OUT/beam_identity_cuda

Step-wise beam search (``OnnxTranslator``: one session run per token, ``search.beam_search`` in NumPy) is the
reference: it is what PyTorch beam search is checked against (parity_variants.md). Per export and batch size
(length-sorted batches, as the service and engines.py batch): the sentences whose tokens equal the
reference's, sacreBLEU of both, and each one's sentences per second (second of two timed passes: the first
builds the sessions' caches). Both run in this one process with the same thread settings, one after the
other, so the two timings share the load; ``load_average`` records it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from compression.runtime.search import LengthBatchedTranslator, SearchConfig, length_batches  # noqa: E402
from compression.runtime.sessions import SessionFactory  # noqa: E402
from compression.runtime.translator import OnnxTranslator, open_translator  # noqa: E402
from compression.train.data import load_split  # noqa: E402
from compression.train.evaluate import bleu_chrf  # noqa: E402


def decode(tr: LengthBatchedTranslator, ids: list[list[int]], batch: int, cfg: SearchConfig) -> tuple[list[list[int]], float]:
    out: list[list[int]] = [[] for _ in ids]
    start = time.perf_counter()
    for idx in length_batches([len(s) for s in ids], batch):
        for i, hyp in zip(idx, tr.translate_ids([ids[i] for i in idx], cfg), strict=True):
            out[i] = hyp
    return out, time.perf_counter() - start


def write(args: argparse.Namespace, rows: list[dict]) -> list[str]:
    result = {"command": "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:]),
              "python": platform.python_version(), "cpus": os.cpu_count(), "rows": rows}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Beam-{args.beam} search: one Loop run vs step-wise, test_2016_flickr ({args.device}, {args.threads} thread(s))",
             "", f"Command: `{result['command']}`", "",
             "| export | provider | batch | identical to step-wise | BLEU step-wise / Loop | sent/s step-wise | sent/s Loop | load |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {r['export']} | {r['provider']} | {r['batch']} | {r['identical']}/{r['sentences']} | "
              f"{r['bleu_stepwise']} / {r['bleu_loop']} | {r['sent_s_stepwise']} | {r['sent_s_loop']} | {r['load_average']} |"
              for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--exports", default="base,int8")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every session (0 = ORT's default)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batches", default="1,32", help="batch sizes (sentences per call)")
    ap.add_argument("--sentences", type=int, default=0, help="the first N test sentences (0 = all 1000)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "beam_identity"))
    args = ap.parse_args()
    pairs = load_split("test_2016_flickr")
    pairs = pairs[: args.sentences] if args.sentences else pairs
    src, refs = [s for s, _ in pairs], [t for _, t in pairs]
    cfg = SearchConfig(beam=args.beam)
    factory = SessionFactory(device=args.device, threads=args.threads)
    rows = []
    for name in args.exports.split(","):
        directory = Path(args.export_dir) / name
        step, loop = OnnxTranslator(directory, factory), open_translator(directory, factory)
        ids = step.tokenizer.encode(src)
        for batch in map(int, args.batches.split(",")):
            timed = {}
            for label, tr in (("stepwise", step), ("loop", loop)):
                decode(tr, ids[: 2 * batch], batch, cfg)  # warm-up
                hyps, seconds = decode(tr, ids, batch, cfg)
                timed[label] = (hyps, seconds)
            ref, mine = timed["stepwise"][0], timed["loop"][0]
            same = sum(a == b for a, b in zip(mine, ref, strict=True))
            bleu = {k: bleu_chrf(step.tokenizer.decode(v[0]), refs)["bleu"] for k, v in timed.items()}
            rows.append({"export": name, "translator": type(loop).__name__, "provider": loop.provider, "batch": batch,
                         "beam": args.beam, "identical": same, "sentences": len(ids),
                         "bleu_stepwise": bleu["stepwise"], "bleu_loop": bleu["loop"],
                         "sent_s_stepwise": round(len(ids) / timed["stepwise"][1], 1),
                         "sent_s_loop": round(len(ids) / timed["loop"][1], 1),
                         "load_average": round(os.getloadavg()[0], 2)})
            print(rows[-1], file=sys.stderr, flush=True)
            write(args, rows)  # after every row: a run cut short by a time limit keeps what it measured
    print("\n".join(write(args, rows)))


if __name__ == "__main__":
    main()
