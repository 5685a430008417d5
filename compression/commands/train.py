from __future__ import annotations

import argparse
import logging

HELP = "train a translation model from a TOML/JSON config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="TOML or JSON TrainConfig (e.g. configs/candidates/c33.toml, the shipped recipe)")
    p.add_argument("--out", required=True, help="run directory; the selected model lands in OUT/model")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    from compression.train.trainer import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = train(TrainConfig.load(args.config), args.out, resume=args.resume, device=args.device)
    print(summary["selection"])
    return 0
