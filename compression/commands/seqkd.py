from __future__ import annotations

import argparse
import json
import logging

HELP = "sequence-level distillation targets: the base model's translations of the training sources"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from compression.compress.seqkd import DEFAULT_TARGETS

    p.add_argument("--base", default="models/base", help="the teacher (default: models/base)")
    p.add_argument("--out", default=DEFAULT_TARGETS, help=f"gzip text, one line per source (default: {DEFAULT_TARGETS})")
    p.add_argument("--beam", type=int, default=5, help="beam size (1: greedy)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=1000, help="sentences per batch (each repeated beam times)")
    p.add_argument("--limit", type=int, default=None, help="the first N training sources only (smoke tests)")


def run(args: argparse.Namespace) -> int:
    import torch

    from compression.compress.seqkd import make_targets
    from compression.runtime.catalogue import resolve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = make_targets(resolve(args.base), args.out, args.beam, device, args.batch_size, args.limit)
    print(json.dumps({k: meta[k] for k in ("path", "sentences", "empty", "beam", "seconds", "device")}))
    return 0
