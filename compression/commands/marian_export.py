from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "export a tzip model or compressed variant as a Hugging Face MarianMT directory (transformers, CTranslate2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, type=Path,
                   help="tzip model directory, or a compressed variant directory (its weights dequantized to fp32); "
                        "default: the shipped models/base")
    p.add_argument("--out", required=True, type=Path, help="MarianMT directory to write")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")


def run(args: argparse.Namespace) -> int:
    from compression.interop.marian_export import export_marian
    from compression.runtime import manifest
    from compression.train.checkpoint import DEFAULT_MODEL, load_model

    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        print(f"{args.out} is not empty; choose another --out or pass --force to overwrite", file=sys.stderr)
        return 2
    directory = args.model or DEFAULT_MODEL
    if (directory / "variant.json").exists():  # a compressed variant: the weights it computes with, in fp32
        from compression.compress.variants import load_variant

        model, tok, _ = load_variant(directory)
    else:
        model, tok = load_model(directory)
    recorded = manifest.read(directory)  # load_* verified every file against it
    source = {k: v for k, v in recorded.items() if k not in ("files", "bytes")}
    source["sha256"] = {name: f["sha256"] for name, f in recorded["files"].items() if name != "metrics.json"}
    try:
        record = export_marian(model, tok, args.out, source=source)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 3
    print(json.dumps({"out": str(args.out), "source": source.get("name"), "ctranslate2_exact": record["ctranslate2_exact"],
                      "ctranslate2_note": record["ctranslate2_note"]}, indent=2))
    return 0
