from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "attention maps of several variants side by side (PNG), or their sharpness over the test set (--entropy)"

DEFAULT_VARIANTS = "base,kmeans-8bit-pt,kmeans-4bit,binary,pruned-90"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated manifest names, the reference first (default: {DEFAULT_VARIANTS})")
    p.add_argument("--text", default=None, help="the English sentence of the comparison figure")
    p.add_argument("--target", default=None,
                   help="German target every variant is teacher-forced on (default: the first variant's greedy translation)")
    p.add_argument("--kind", default="cross",
                   help="encoder, decoder, cross, a comma-separated list or 'all' (one figure row each; default cross)")
    p.add_argument("--layer", type=int, default=0, help="layer index, from 0 (default 0)")
    p.add_argument("--head", type=int, default=0, help="head index, from 0 (default 0)")
    p.add_argument("--entropy", action="store_true",
                   help="instead of one sentence: mean attention entropy per layer and head over the test set; "
                        "writes OUT.md, OUT.json and OUT.png")
    p.add_argument("--limit", type=int, default=200, help="--entropy: first N test sentences (default 200)")
    p.add_argument("--split", default="test_2016_flickr", help="--entropy: data split (default test_2016_flickr)")
    p.add_argument("--targets", default="reference,own",
                   help="--entropy: teacher-force on 'reference', the variant's 'own' greedy output, or both (default)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch: variants under models/ (default); onnx: exports under --onnx-root")
    p.add_argument("--models-root", action="append", default=None, metavar="DIR",
                   help="torch backend: where variants are searched by manifest name (repeatable; default models/)")
    p.add_argument("--onnx-root", default=None, help="onnx backend: export root (default build/onnx or $TZIP_ONNX_ROOT)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dpi", type=int, default=110)
    p.add_argument("--out", required=True, help="FILE.png (figure), or a path prefix with --entropy")


def run(args: argparse.Namespace) -> int:
    from compression.analysis.attention_study import (
        MODEL_ROOTS,
        comparison_figure,
        entropy_markdown,
        entropy_study,
        open_variants,
    )
    from compression.analysis.plots import entropy_figure
    from compression.runtime.attention_maps import KINDS, AttentionIndexError
    from compression.runtime.heatmap import to_png

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    kinds = list(KINDS) if args.kind == "all" else [k.strip() for k in args.kind.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if not names or bad:
        print(f"--variants needs at least one name; --kind must be among {KINDS} or 'all' (got {bad})", file=sys.stderr)
        return 2
    if not args.entropy and not args.text:
        print("give --text for the comparison figure, or --entropy for the sharpness table", file=sys.stderr)
        return 2
    try:
        variants = open_variants(names, args.backend, args.models_root or MODEL_ROOTS, args.onnx_root)
    except (KeyError, FileNotFoundError) as e:
        print(e.args[0] if e.args else e, file=sys.stderr)
        return 2
    command = "python -m compression attention " + " ".join(_quote(a) for a in sys.argv[2:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.entropy:
        from compression.train.data import load_split

        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        if not targets or set(targets) - {"reference", "own"}:
            print("--targets takes reference, own or both", file=sys.stderr)
            return 2
        pairs = load_split(args.split)[: args.limit]
        results = entropy_study(variants, pairs, targets, args.batch_size)
        setting = (f"Mean entropy (nats) of each attention row, over the first {len(pairs)} sentences of {args.split}, "
                   f"backend {args.backend}; rows of padding and the decoder's first row (one key) are left out; "
                   "H = mean over layers and heads; lower = sharper. Percentages: change from the first variant.")
        Path(f"{out}.json").write_text(json.dumps({"setting": setting, "command": command, "results": results}, indent=1) + "\n")
        Path(f"{out}.md").write_text(entropy_markdown(results, targets, setting, command))
        title = f"mean attention entropy per layer and head, first {len(pairs)} sentences of {args.split}"
        for target in targets:
            png = Path(f"{out}.png") if target == targets[0] else Path(f"{out}_{target}.png")
            png.write_bytes(to_png(entropy_figure(results, target, f"{title}, {target} targets"), args.dpi))
        print(f"wrote {out}.md, {out}.json and the figure(s) {out}*.png")
        return 0
    try:
        fig, record = comparison_figure(variants, args.text, kinds, args.layer, args.head, args.target)
    except AttentionIndexError as e:
        print(e, file=sys.stderr)
        return 2
    out.write_bytes(to_png(fig, args.dpi))
    record["command"] = command
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')} (target: {record['target']!r}, from {record['target_from']})")
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
