"""ONNX Runtime against PyTorch for every export: test BLEU (greedy, beam 5) and greedy token identity.

    python -m compression export --all --out build/onnx
    python benchmarks/speed/parity.py --jobs 2 --threads 1     # -> benchmarks/speed/parity_variants.{json,md}
    python benchmarks/speed/parity.py --variants NEW --update  # add one (new) export's row to those files

For every export under --export-dir (one worker process per export, --jobs at once, --threads each):

- test_2016_flickr BLEU, greedy and beam 5, through ONNX Runtime on the CPU; recorded in the export's
  manifest (``bleu_onnx``, ``bleu_greedy_onnx``: ``compression.export.writer.evaluate_export``);
- the PyTorch BLEU of the same weights as the model/variant recorded it (``metrics.json`` of the source,
  measured wherever it was made: the shipped variants on the H200); exports with no PyTorch twin
  (fp16 and int8-dynamic graphs derived from the base) are compared with their source's PyTorch BLEU;
- PyTorch greedy rerun here on the CPU on the source's weights (the dequantized weights of a compressed
  variant, exactly as ``compression.compress.variants.load_variant`` loads them), its BLEU, and how many of its
  translations ONNX Runtime greedy reproduces token for token (--no-identity skips this, the slow part).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from compression.runtime.catalogue import list_exported  # noqa: E402

MAX_DELTA = 0.2  # issue 4: BLEU through ONNX Runtime within 0.2 of PyTorch's


def _translate_ids(tr, src_ids: list[list[int]], batch: int) -> list[list[int]]:
    from compression.runtime.search import SearchConfig, length_batches

    out: list[list[int]] = [[] for _ in src_ids]
    for idx in length_batches([len(s) for s in src_ids], batch):
        for i, hyp in zip(idx, tr.translate_ids([src_ids[i] for i in idx], SearchConfig(beam=1)), strict=True):
            out[i] = hyp
    return out


def source_dir(man: dict[str, Any], model_dir: Path, variants_root: Path) -> Path:
    """The PyTorch model or compressed variant an export was made from, found by its manifest name."""
    from compression.compress.variants import find_variant
    from compression.runtime import manifest as manifest_lib

    name = man.get("derived_from") or man["source"]["name"]
    if manifest_lib.read(model_dir).get("name") == name:
        return model_dir
    return find_variant(name, variants_root)


def load_torch(directory: Path):
    from compression.compress.variants import VARIANT_FILE, load_variant
    from compression.train.checkpoint import load_model

    if (directory / VARIANT_FILE).exists():
        model, tok, _ = load_variant(directory)
        return model, tok
    return load_model(directory)


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """One export: ONNX Runtime BLEU (recorded in its manifest), PyTorch reference, token identity."""
    from compression.export.writer import evaluate_export, source_meta
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.translator import open_translator
    from compression.train.data import load_split
    from compression.train.evaluate import bleu_chrf

    t0 = time.perf_counter()
    export_path, limit, batch = Path(task["path"]), task["limit"], task["batch"]
    src = source_dir(task["manifest"], Path(task["model_dir"]), Path(task["variants_root"]))
    ref_meta = source_meta(src)
    sessions = SessionFactory(threads=task["threads"])
    after = evaluate_export(export_path, limit=limit, batch_size=batch, sessions=sessions)
    row: dict[str, Any] = {
        "name": after["name"], "method": after.get("method"), "precision": after.get("precision"),
        "storage": after.get("storage"), "model_bytes": after.get("model_bytes"), "ratio": after.get("ratio"),
        "torch_source": ref_meta.get("name"), "same_weights": not task["manifest"].get("derived_from"),
        "torch_bleu_beam5": ref_meta.get("bleu"), "onnx_bleu_beam5": after["bleu_onnx"],
        "torch_bleu_greedy": ref_meta.get("bleu_greedy"), "onnx_bleu_greedy": after["bleu_greedy_onnx"],
    }
    for kind in ("beam5", "greedy"):
        ref, got = row[f"torch_bleu_{kind}"], row[f"onnx_bleu_{kind}"]
        row[f"delta_{kind}"] = None if ref is None else round(got - ref, 2)
    row["onnx_seconds"] = round(time.perf_counter() - t0, 1)
    if task["identity"]:
        import torch

        from compression.train.translator import TorchTranslator

        torch.set_num_threads(task["threads"])
        pairs = load_split("test_2016_flickr")[:limit]
        model, tok = load_torch(src)
        src_ids = tok.encode([s for s, _ in pairs])
        t1 = time.perf_counter()
        ref_ids = _translate_ids(TorchTranslator(model, tok), src_ids, batch)
        row["torch_cpu_seconds"] = round(time.perf_counter() - t1, 1)
        out_ids = _translate_ids(open_translator(export_path, sessions), src_ids, batch)
        row["torch_cpu_bleu_greedy"] = bleu_chrf(tok.decode(ref_ids), [t for _, t in pairs])["bleu"]
        row["identical"] = sum(a == b for a, b in zip(ref_ids, out_ids, strict=True))
        row["sentences"] = len(ref_ids)
        row["first_difference"] = next((i for i, (a, b) in enumerate(zip(ref_ids, out_ids, strict=True)) if a != b),
                                       None)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main() -> None:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--model", default=str(REPO / "models" / "base"), help="the base model (PyTorch twin of base/fp16/int8)")
    ap.add_argument("--variants-root", default=str(REPO / "models"), help="where the compressed variants are found by name")
    ap.add_argument("--variants", default=None, help="comma-separated export names (default: every export)")
    ap.add_argument("--limit", type=int, default=None, help="first N test sentences only (a smoke run)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=2, help="exports measured at once (one process each)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime and PyTorch threads per process")
    ap.add_argument("--no-identity", dest="identity", action="store_false", help="skip PyTorch CPU greedy")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "parity_variants"))
    ap.add_argument("--update", action="store_true",
                    help="measure only --variants and put their rows into the existing OUT.json (e.g. a new variant)")
    args = ap.parse_args()
    if args.update and not (args.variants and Path(f"{args.out}.json").exists()):
        sys.exit("--update needs --variants and an existing OUT.json; without it, measure every export")

    exports = {m["name"]: m for m in list_exported(args.export_dir)}
    names = args.variants.split(",") if args.variants else sorted(exports, key=lambda n: (n != "base", n))
    missing = sorted(set(names) - set(exports))
    if missing:
        sys.exit(f"no export named {missing} under {args.export_dir}; run `python -m compression export --all` first")
    tasks = [{"path": exports[n]["path"], "manifest": exports[n], "limit": args.limit, "batch": args.batch,
              "threads": args.threads, "identity": args.identity, "model_dir": args.model,
              "variants_root": args.variants_root} for n in names]
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(measure, t) for t in tasks]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="parity", unit="export", file=sys.stderr):
            row = fut.result()
            rows[row["name"]] = row
            tqdm.write(json.dumps(row), file=sys.stderr)
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])
    run = {"command": command, "seconds": round(time.perf_counter() - t0, 1),
           "load_average": [round(x, 2) for x in os.getloadavg()], "exports": names}
    result = {"command": command, "split": "test_2016_flickr", "limit": args.limit, "batch": args.batch,
              "threads": args.threads, "jobs": args.jobs, "seconds": run["seconds"],
              "load_average": run["load_average"], "max_delta": MAX_DELTA, "exports": [rows[n] for n in names]}
    if args.update:
        old = json.loads(Path(f"{args.out}.json").read_text())
        settings = ("split", "limit", "batch", "threads")
        if any(old.get(k) != result[k] for k in settings):
            sys.exit(f"--update: {settings} differ from {args.out}.json's; measure every export instead")
        merged = {r["name"]: r for r in old["exports"]} | rows
        runs = old.get("runs") or [{k: old[k] for k in ("command", "seconds", "load_average")}]
        result = {**old, "runs": [*runs, run],
                  "exports": [merged[n] for n in sorted(merged, key=lambda n: (n != "base", n))]}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))


def _f(v: Any) -> str:
    return "n/a" if v is None else str(v)


def markdown(result: dict) -> str:
    lim = "all 1000" if result["limit"] is None else f"first {result['limit']}"
    runs = result.get("runs") or [result]
    lines = [
        "# ONNX Runtime vs PyTorch on test_2016_flickr, every export", "",
        "Command (after `make export`, i.e. `python -m compression export --all --out build/onnx`):", "",
        *[f"    {r['command']}    # {r['seconds']} s, load average {r['load_average'][0]}" for r in runs], "",
        f"{lim} sentences, batch {result['batch']}, {result['threads']} thread(s) per process, "
        f"up to {result['jobs']} processes at once.", "",
        "- **torch**: the PyTorch BLEU recorded with the model/variant (its `metrics.json`; the shipped variants "
        "were measured on the H200 in PyTorch, fp32). fp16 and int8 are graph-only exports of the base "
        "(`*`): compared with the base's PyTorch fp32 BLEU.",
        "- **onnx**: measured here through ONNX Runtime on the CPU (recorded as `bleu_onnx`/`bleu_greedy_onnx` "
        "in each export's manifest).",
        "- **torch CPU greedy / identical**: PyTorch greedy rerun on this CPU on the same weights as the export "
        "(for `*`: the base's fp32 weights), its BLEU, and how many of its translations ONNX Runtime greedy "
        "reproduces token for token.", "",
        "| export | method | precision | storage | ratio | beam5 torch | onnx | delta | greedy torch | onnx | delta "
        "| torch CPU greedy | identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["exports"]:
        ident = f"{r['identical']}/{r['sentences']}" if "identical" in r else "not run"
        star = "" if r["same_weights"] else " *"
        lines.append(
            f"| {r['name']}{star} | {r['method']} | {r['precision']} | {r['storage']} | {_f(r['ratio'])} | "
            f"{_f(r['torch_bleu_beam5'])} | {r['onnx_bleu_beam5']} | {_f(r['delta_beam5'])} | "
            f"{_f(r['torch_bleu_greedy'])} | {r['onnx_bleu_greedy']} | {_f(r['delta_greedy'])} | "
            f"{_f(r.get('torch_cpu_bleu_greedy'))} | {ident} |")
    worst = max((abs(r[f"delta_{k}"]) for r in result["exports"] for k in ("beam5", "greedy")
                 if r[f"delta_{k}"] is not None), default=None)
    if worst is not None:
        verdict = "within" if worst <= result["max_delta"] else "OUTSIDE"
        lines += ["", f"Largest |delta|: **{worst:.2f}** BLEU ({verdict} the {result['max_delta']} of issue 4)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
