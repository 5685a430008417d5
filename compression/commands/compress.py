from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

HELP = "compress the base model with a variant config (post-training or retrained) and measure it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="variant config, e.g. configs/variants/kmeans-2bit.toml")
    p.add_argument("--out", default=None, help="variant directory (default: models/variants/<name>)")
    p.add_argument("--base", default=None, help="base model directory (default: the config's, models/base)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-minutes", type=float, default=None, help="override the retraining budget")
    p.add_argument("--max-steps", type=int, default=None, help="override the retraining step limit")
    p.add_argument("--max-tokens", type=int, default=None, help="override the retraining batch size (tokens)")
    p.add_argument("--limit", type=int, default=None, help="evaluate/validate on the first N sentences only")
    p.add_argument("--train-limit", type=int, default=None, help="retrain on the first N training pairs only")
    p.add_argument("--seqkd-path", default=None, help="override the seq-KD targets file (see `seqkd`)")
    p.add_argument("--no-eval", action="store_true", help="write the variant without measuring BLEU")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--log", default=None, help="write the retraining history (JSON) here")


def run(args: argparse.Namespace) -> int:
    import torch

    from compression.compress.pipeline import VariantConfig, compress
    from compression.compress.variants import evaluate_variant, finalize, load_variant, resolve, write_variant
    from compression.runtime.catalogue import MODELS_ROOT
    from compression.train.checkpoint import load_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = VariantConfig.load(args.config)
    if cfg.finetune is not None:
        overrides = {"max_minutes": args.max_minutes, "max_steps": args.max_steps, "eval_limit": args.limit,
                     "train_limit": args.train_limit, "max_tokens": args.max_tokens,
                     "seqkd_path": args.seqkd_path}
        cfg.finetune = cfg.finetune.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base_dir = resolve(args.base or cfg.base)
    out = Path(args.out) if args.out else MODELS_ROOT / "variants" / cfg.name
    t0 = time.time()
    model, tok = load_model(base_dir, device)
    history: list = []
    init = load_variant(resolve(cfg.init), device)[0] if cfg.init else None  # sha256-checked
    records = compress(model, cfg, tok, device, history, init)
    write_variant(out, records, cfg, base_dir)
    seconds = round(time.time() - t0, 1)
    if args.log:
        Path(args.log).write_text(json.dumps({"config": cfg.model_dump(mode="json"), "history": history,
                                              "compress_seconds": seconds}, indent=1) + "\n")
    metrics = {} if args.no_eval else evaluate_variant(out, device, args.limit, args.batch_size)
    metrics["compress"] = {"seconds": seconds, "device": device, "command": f"python -m compression compress --config {args.config}"}
    if history and "selected" in history[-1]:
        metrics["compress"].update(selected=history[-1]["selected"], steps=history[-1]["steps"])
    meta = finalize(out, metrics, base_dir)
    keys = ("name", "method", "bits", "sparsity", "model_bytes", "ratio", "bleu", "bleu_greedy", "retained")
    print(json.dumps({k: meta.get(k) for k in keys} | {"path": str(out)}))
    return 0
