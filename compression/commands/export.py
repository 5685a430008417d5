from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "export the base model and compressed variants to ONNX (encoder + KV-cache decoder step) with manifests"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", action="append", default=None, metavar="NAME",
                   help="a variant by manifest name (repeatable): base, a compressed variant, fp16 or int8; default --all")
    p.add_argument("--all", action="store_true", help="the base, every variant under --variants-root, and fp16/int8")
    p.add_argument("--model", default=None, help="base model directory (default: models/base)")
    p.add_argument("--variants-root", default=None, help="where compressed variants are searched (default: models/)")
    p.add_argument("--out", default=None, help="export root; each variant goes to OUT/<name> (default: build/onnx)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None,
                   help="override the precision (default: fp16/int8 for those baselines, fp32 otherwise)")
    p.add_argument("--name", default=None, help="name of the export (one --variant only; default: the variant's)")
    p.add_argument("--dense", action="store_true", help="store dequantized dense weights instead of compact codes")
    p.add_argument("--graphs", action="store_true",
                   help="write a compressed variant as ONNX graph files that decode its codes (default: its stored "
                        "form, from which the runtime builds int8/fp16 graphs at load)")
    p.add_argument("--evaluate", action="store_true",
                   help="measure test BLEU (greedy, beam 5) through ONNX Runtime and record it in the manifest")
    p.add_argument("--limit", type=int, default=None, help="with --evaluate: first N test sentences only")
    p.add_argument("--json", action="store_true", help="print one JSON manifest summary per export")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from compression.export.writer import ExportConfig, evaluate_export, export_directory, plan_exports
    from compression.runtime.catalogue import DEFAULT_EXPORT_ROOT

    if args.name and len(args.variant or []) != 1:
        print("--name needs exactly one --variant", file=sys.stderr)
        return 2
    out_root = Path(args.out) if args.out else DEFAULT_EXPORT_ROOT
    jobs = plan_exports(None if args.all else args.variant, args.model, args.variants_root)
    for job in tqdm(jobs, desc="export", unit="variant", file=sys.stderr):
        name = args.name or job.name
        meta = {**job.meta, "name": name}
        precision = args.precision or job.precision
        config = ExportConfig(precision=precision, compact=not args.dense, stored=not (args.graphs or args.dense))
        man = export_directory(job.source, out_root / name, config, job.base_dir, meta)
        if args.evaluate:
            man = evaluate_export(out_root / name, limit=args.limit)
        summary = {k: man.get(k) for k in ("name", "method", "precision", "storage", "bits", "sparsity", "model_bytes",
                                           "ratio", "bleu", "bleu_onnx", "bleu_greedy", "bleu_greedy_onnx")}
        print(json.dumps(summary) if args.json else
              f"{name}: {man['model_bytes']:,} bytes ({precision}, {man['storage']}) -> {out_root / name}")
    return 0
