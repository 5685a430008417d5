from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "translate stdin (one sentence per line) to stdout"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model directory (default: the shipped models/base)")
    p.add_argument("--variant", default=None, help="a compressed variant by name (see `report --json`)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=64)


def load_translator(args: argparse.Namespace):
    """-> (translator, directory) for --model/--variant/--backend/--device."""
    from compression.runtime.catalogue import DEFAULT_MODEL

    directory = Path(args.model) if args.model else DEFAULT_MODEL
    if args.backend == "onnx":
        from compression.runtime.sessions import SessionFactory
        from compression.runtime.translator import load_translator as load_onnx

        translator = load_onnx(directory, variant=args.variant, sessions=SessionFactory(device=args.device))
    elif args.variant is not None:
        from compression.compress.variants import load_variant_translator

        translator = load_variant_translator(args.variant, args.device, directory if args.model else None)
    else:
        from compression.train.checkpoint import load_model
        from compression.train.translator import TorchTranslator

        model, tok = load_model(directory, args.device)
        translator = TorchTranslator(model, tok, args.device)
    return translator, directory


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len", type=int, default=256)


def run(args: argparse.Namespace) -> int:
    from compression.runtime.search import SearchConfig

    translator, _ = load_translator(args)
    print(f"provider: {translator.provider}", file=sys.stderr)
    cfg = SearchConfig(beam=args.beam, max_len=args.max_len)
    lines = [line.rstrip("\n") for line in sys.stdin]
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)
    for chunk in range(0, len(todo), 1024):  # stream long inputs in slices
        idx = todo[chunk : chunk + 1024]
        for i, hyp in zip(idx, translator.translate([lines[i] for i in idx], cfg, args.batch_size), strict=True):
            out[i] = hyp
    sys.stdout.write("".join(h + "\n" for h in out))
    return 0
