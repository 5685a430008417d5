from __future__ import annotations

import argparse
import json
import sys

HELP = "sacreBLEU and chrF of a model or variant on a Multi30k split (greedy and beam)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from compression.commands.translate import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--split", default="test_2016_flickr", choices=["train", "val", "test_2016_flickr"])
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes; 1 is greedy")
    p.add_argument("--limit", type=int, default=None, help="first N sentences only")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--write", action="store_true",
                   help="record the scores in the model's metrics.json and manifest (PyTorch backend, whole split); "
                   "without it nothing is written")


def run(args: argparse.Namespace) -> int:
    from compression.commands.translate import load_translator
    from compression.train.evaluate import evaluate

    if args.write and (args.limit is not None or args.backend != "torch"):
        print("--write records only whole-split scores of the PyTorch model; drop --limit / --backend", file=sys.stderr)
        return 2
    translator, directory = load_translator(args)
    beams = tuple(int(b) for b in args.beams.split(","))
    result = evaluate(translator, args.split, beams, args.limit, args.batch_size)
    if args.write:
        from compression.train.checkpoint import update_metrics

        update_metrics(directory, {args.split: result})
        print(f"wrote the {args.split} scores to {directory}/metrics.json", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}", file=sys.stdout)
    return 0
