"""ONNX Runtime against PyTorch on the whole test set: token identity (fp32 greedy) and BLEU of every export.

    python benchmarks/speed/parity.py          # -> benchmarks/speed/parity_cpu.{json,md}

For every export under --export-dir: test_2016_flickr BLEU greedy and beam 5 through ONNX Runtime (CPU),
recorded in the export's manifest (bleu_onnx, bleu_greedy_onnx) and compared with the PyTorch BLEU of the
same weights that the manifest carries from the model/variant (measured by whoever made it). For the base
model, PyTorch greedy is rerun here and compared token by token with ONNX Runtime greedy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from compression.data import load_split  # noqa: E402
from compression.export import evaluate_export  # noqa: E402
from compression.runtime import OnnxTranslator, list_exported  # noqa: E402
from compression.search import SearchConfig  # noqa: E402


def token_identity(export_dir: Path, limit: int | None, batch: int) -> dict:
    import torch

    from compression.checkpoint import load_model
    from compression.translator import TorchTranslator

    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load_model()
    src_ids = tok.encode([s for s, _ in load_split("test_2016_flickr")[:limit]])
    t0 = time.perf_counter()
    ref = _translate_ids(TorchTranslator(model, tok), src_ids, batch)
    t1 = time.perf_counter()
    out = _translate_ids(OnnxTranslator(export_dir), src_ids, batch)
    same = sum(a == b for a, b in zip(ref, out, strict=True))
    return {"sentences": len(ref), "identical": same, "batch": batch, "torch_seconds": round(t1 - t0, 1),
            "onnx_seconds": round(time.perf_counter() - t1, 1),
            "first_difference": next((i for i, (a, b) in enumerate(zip(ref, out, strict=True)) if a != b), None)}


def _translate_ids(tr, src_ids: list[list[int]], batch: int) -> list[list[int]]:
    from compression.search import length_batches

    out: list[list[int]] = [[] for _ in src_ids]
    for idx in length_batches([len(s) for s in src_ids], batch):
        for i, hyp in zip(idx, tr.translate_ids([src_ids[i] for i in idx], SearchConfig(beam=1)), strict=True):
            out[i] = hyp
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--variants", default=None, help="comma-separated export names (default: every export)")
    ap.add_argument("--limit", type=int, default=None, help="first N test sentences only (a smoke run)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "parity_cpu"))
    args = ap.parse_args()

    exports = {m["name"]: m for m in list_exported(args.export_dir)}
    names = args.variants.split(",") if args.variants else sorted(exports, key=lambda n: (n != "base", n))
    rows = []
    for name in names:
        before = exports[name]
        t0 = time.perf_counter()
        after = evaluate_export(before["path"], limit=args.limit, batch_size=args.batch)
        torch_beam, torch_greedy = before.get("bleu"), before.get("bleu_greedy")
        row = {"name": name, "method": after.get("method"), "precision": after.get("precision"),
               "storage": after.get("storage"), "ratio": after.get("ratio"),
               "torch_bleu_beam5": torch_beam, "onnx_bleu_beam5": after["bleu_onnx"],
               "torch_bleu_greedy": torch_greedy, "onnx_bleu_greedy": after["bleu_greedy_onnx"],
               "delta_beam5": None if torch_beam is None else round(after["bleu_onnx"] - torch_beam, 2),
               "delta_greedy": None if torch_greedy is None else round(after["bleu_greedy_onnx"] - torch_greedy, 2),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    identity = token_identity(Path(exports["base"]["path"]), args.limit, args.batch) if "base" in names else None
    result = {"command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
              "split": "test_2016_flickr", "limit": args.limit, "base_greedy_token_identity": identity, "exports": rows}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["# ONNX Runtime vs PyTorch on test_2016_flickr", "", f"Command: `{result['command']}`", ""]
    ident = result["base_greedy_token_identity"]
    if ident:
        lines += [f"Base model, greedy, batch {ident['batch']}: **{ident['identical']}/{ident['sentences']}** "
                  "translations token-identical between ONNX Runtime (fp32, CPU) and PyTorch eager.", ""]
    lines += ["PyTorch BLEU: as recorded with the model/variant (n/a: a graph-only variant with no PyTorch twin). "
              "ONNX Runtime BLEU: measured here on the CPU.", "",
              "| export | method | precision | storage | ratio | BLEU beam5 torch | onnx | delta | BLEU greedy torch | onnx | delta |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["exports"]:
        def f(v):
            return "n/a" if v is None else v
        lines.append(f"| {r['name']} | {r['method']} | {r['precision']} | {r['storage']} | {f(r['ratio'])} | "
                     f"{f(r['torch_bleu_beam5'])} | {r['onnx_bleu_beam5']} | {f(r['delta_beam5'])} | "
                     f"{f(r['torch_bleu_greedy'])} | {r['onnx_bleu_greedy']} | {f(r['delta_greedy'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
