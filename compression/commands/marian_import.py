from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "import a Hugging Face MarianMT (opus-mt) checkpoint directory as a tzip model directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="MarianMT directory: config.json, model.safetensors or pytorch_model.bin, source.spm, "
                        "target.spm, vocab.json (e.g. a local copy of Helsinki-NLP/opus-mt-en-de)")
    p.add_argument("--out", required=True, type=Path, help="tzip model directory to write (like models/base)")
    p.add_argument("--name", default=None,
                   help="the model's name in its manifest, which variants, exports and the service know it by "
                        "(default: from the checkpoint, e.g. opus-mt-en-de); must not be 'base', the shipped model")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")


def run(args: argparse.Namespace) -> int:
    from compression.interop.marian_import import UnsupportedMarian, import_marian, model_name
    from compression.runtime import manifest
    from compression.train.checkpoint import save_model

    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        print(f"{args.out} is not empty; choose another --out or pass --force to overwrite", file=sys.stderr)
        return 2
    try:
        model, tok, meta = import_marian(args.checkpoint)
    except UnsupportedMarian as e:
        print(str(e), file=sys.stderr)
        return 3
    name = args.name or model_name(meta["origin"]["checkpoint"])
    if name == "base":
        print("--name base would clash with the shipped model; choose another name", file=sys.stderr)
        return 2
    save_model(args.out, model, tok, metrics=None, meta=meta)
    # the manifest names the model and records where its weights came from (a model is known by this, not by its path)
    record = manifest.write(args.out, {"name": name, "method": "none", "format": "tzip-fp32", **meta})
    summary = {"out": str(args.out), "name": name, "parameters": model.num_parameters(), "vocab_size": model.cfg.vocab_size,
               "bytes": record["bytes"], **meta}
    print(json.dumps(summary, indent=2))
    return 0
