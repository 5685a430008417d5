"""Translation speed of every exported variant beside PyTorch eager and CTranslate2, in one run.

    python benchmarks/speed/bench.py --device cpu                 # -> benchmarks/speed/results_cpu.{json,md}
    python benchmarks/speed/bench.py --device cuda --batch 64     # on the H200 (scripts/device_bench.sh)

Per engine, on test_2016_flickr, greedy:
- batch-1 latency: the first --latency-n sentences one by one (after warm-up); median and p90 ms per sentence;
- throughput: all --throughput-n sentences in length-sorted batches of --batch, twice; sentences/s and tokens/s of
  the second pass (the first, which includes capturing CUDA graphs, is recorded as first_pass_sent_s);
- quality of that run: sacreBLEU, and how many outputs are token-identical to PyTorch eager's.
Engines: PyTorch eager fp32 (the shipped model), every ONNX export found under --export-dir (by manifest),
CTranslate2 fp32 and int8 built from the same weights (CPU). Absolute times drift between machines and
with load: compare engines within one run (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hostinfo import cpu_name  # noqa: E402

from compression.runtime.search import SearchConfig, length_batches  # noqa: E402
from compression.train.data import load_split  # noqa: E402
from compression.train.evaluate import bleu_chrf  # noqa: E402


class Engine:
    """name, kind, provider, translate_ids(list of id lists) -> list of id lists (greedy)."""

    def __init__(self, name: str, kind: str, provider: str, fn, meta: dict | None = None):
        self.name, self.kind, self.provider, self.fn, self.meta = name, kind, provider, fn, meta or {}


def torch_engine(device: str, threads: int | None) -> tuple[Engine, object, object]:
    import torch

    from compression.train.checkpoint import load_model
    from compression.train.translator import TorchTranslator

    if threads:
        torch.set_num_threads(threads)
    model, tok = load_model(device=device)
    tr = TorchTranslator(model, tok, device)
    cfg = SearchConfig(beam=1)
    return Engine("pytorch-eager-fp32", "pytorch", tr.provider, lambda ids: tr.translate_ids(ids, cfg)), model, tok


def onnx_engines(export_dir: Path, names: list[str] | None, device: str, threads: int | None,
                 device_argmax: bool = True, greedy_loop: bool = True, cuda_graph: bool = True) -> list[Engine]:
    from compression.runtime.catalogue import list_exported
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.translator import open_translator

    engines = []
    found = {m["name"]: m for m in list_exported(export_dir)}
    for name in names or sorted(found, key=lambda n: (n != "base", n)):
        if name not in found:
            raise SystemExit(f"no export named {name!r} under {export_dir} (found {sorted(found)}); run `make export`")
        tr = open_translator(found[name]["path"], SessionFactory(device=device, threads=threads or 0, device_argmax=device_argmax,
                                                               greedy_loop=greedy_loop, cuda_graph=cuda_graph))
        cfg = SearchConfig(beam=1)
        meta = {k: found[name].get(k) for k in ("method", "precision", "storage", "model_bytes", "ratio", "bleu", "bleu_greedy")}
        # the weights it was exported from: the base's (base, fp16, int8) can be compared with PyTorch eager's tokens
        meta["weights_of"] = found[name].get("derived_from") or found[name].get("source", {}).get("name", name)
        note = getattr(tr, "provider_note", "")
        provider = tr.provider + (f" ({note})" if note else "")
        engines.append(Engine(f"onnx-{name}", "onnxruntime", provider, lambda ids, tr=tr, cfg=cfg: tr.translate_ids(ids, cfg), meta))
    return engines


def ct2_engines(model, tok, threads: int | None, tmp: Path) -> list[Engine]:
    from ct2_model import Ct2Translator, convert

    convert(model, tok, tmp / "ct2")
    cfg = SearchConfig(beam=1)
    engines = []
    for compute in ("float32", "int8"):
        tr = Ct2Translator(tmp / "ct2", tok, compute, threads or 0)
        engines.append(Engine(f"ctranslate2-{compute}", "ctranslate2", tr.provider,
                              lambda ids, tr=tr: tr.translate_ids(ids, 1, max(cfg.limit(len(s)) for s in ids))))
    return engines


def measure(engine: Engine, ids: list[list[int]], latency_n: int, batch: int, warmup: int = 8) -> dict:
    engine.fn(ids[:warmup])
    for s in ids[:2]:
        engine.fn([s])
    times = []
    for s in ids[:latency_n]:
        t0 = time.perf_counter()
        engine.fn([s])
        times.append((time.perf_counter() - t0) * 1000)
    passes = []  # the set twice: the second is the steady state (CUDA graphs are captured on first use)
    for _ in range(2):
        out: list[list[int]] = [[] for _ in ids]
        t0 = time.perf_counter()
        for idx in length_batches([len(s) for s in ids], batch):
            for i, hyp in zip(idx, engine.fn([ids[i] for i in idx]), strict=True):
                out[i] = hyp
        passes.append(time.perf_counter() - t0)
    seconds = passes[-1]
    tokens = sum(len(h) + 1 for h in out)  # + the end token each sentence produced (or ran out at)
    return {"latency_ms_median": round(statistics.median(times), 2),
            "latency_ms_p90": round(float(np.percentile(times, 90)), 2),
            "throughput_sent_s": round(len(ids) / seconds, 1), "throughput_tok_s": round(tokens / seconds, 1),
            "throughput_seconds": round(seconds, 2), "first_pass_sent_s": round(len(ids) / passes[0], 1), "hyps": out}


def markdown(result: dict) -> str:
    rows = result["engines"]
    torch_row = next((r for r in rows if r["name"] == "pytorch-eager-fp32"), None)
    ort = next((r for r in rows if r["name"] == "onnx-base"), None)
    ct2 = next((r for r in rows if r["name"] == "ctranslate2-int8"), None)
    lines = [f"# Translation speed, {result['device']} ({result['cpu']}, {result['machine']})", "",
             f"Command: `{result['command']}`  ", f"Load average before/after: {result['loadavg_before']} / "
             f"{result['loadavg_after']}; threads: {result['threads'] or 'default'}; versions: {result['versions']}.  ",
             f"test_2016_flickr, greedy. Latency: the first {result['latency_n']} sentences one at a time (ms per "
             f"sentence). Throughput: {result['sentences']} sentences in length-sorted batches of {result['batch']}. "
             "BLEU and token identity are of the throughput run.", "",
             "| engine | provider | size MB | latency median ms | p90 ms | latency / torch | latency / onnx-base "
             "| sent/s | tok/s | sent/s / CT2 int8 | BLEU | identical to torch |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = r.get("meta", {}).get("model_bytes")
        cells = [r["name"], r["provider"], f"{size / 1e6:.2f}" if size else "",
                 r["latency_ms_median"], r["latency_ms_p90"],
                 f"{r['latency_ms_median'] / torch_row['latency_ms_median']:.2f}" if torch_row else "",
                 f"{r['latency_ms_median'] / ort['latency_ms_median']:.2f}" if ort else "",
                 r["throughput_sent_s"], r["throughput_tok_s"],
                 f"{r['throughput_sent_s'] / ct2['throughput_sent_s']:.2f}" if ct2 else "",
                 r["bleu"], r.get("identical_to_torch", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--export-dir", default=str(REPO / "build" / "onnx"))
    ap.add_argument("--variants", default=None, help="comma-separated export names (default: every export)")
    ap.add_argument("--latency-n", type=int, default=100)
    ap.add_argument("--throughput-n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for every engine (default: all cores)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--host-argmax", action="store_true", help="CUDA greedy: copy the scores and take the argmax on the host")
    ap.add_argument("--no-ct2", action="store_true")
    ap.add_argument("--step", action="store_true", help="greedy one session run per token (default: the ONNX Loop graph)")
    ap.add_argument("--no-cuda-graph", action="store_true", help="CUDA greedy: the ONNX Loop graph instead of CUDA graphs")
    ap.add_argument("--out", default=None, help="output prefix (default benchmarks/speed/results_<device>)")
    args = ap.parse_args()
    if args.device == "cuda":
        import torch  # noqa: F401  (before onnxruntime: it loads the CUDA libraries onnxruntime-gpu needs)
    out_prefix = Path(args.out or REPO / "benchmarks" / "speed" / f"results_{args.device}")

    pairs = load_split("test_2016_flickr")[: args.throughput_n]
    refs = [t for _, t in pairs]
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    engines: list[Engine] = []
    model = tok = None
    if not args.no_torch:
        e, model, tok = torch_engine(args.device, args.threads)
        engines.append(e)
    engines += onnx_engines(Path(args.export_dir), args.variants.split(",") if args.variants else None, args.device,
                            args.threads, device_argmax=not args.host_argmax, greedy_loop=not args.step,
                            cuda_graph=not args.no_cuda_graph)
    if tok is None:
        from compression.runtime.tokenizer import Tokenizer

        tok = Tokenizer(Path(args.export_dir) / "base" / "tokenizer.model") if (Path(args.export_dir) / "base").exists() \
            else None
    tmp = Path(tempfile.mkdtemp())
    if not args.no_ct2 and args.device == "cpu" and model is not None:
        engines += ct2_engines(model.cpu(), tok, args.threads, tmp)
    ids = tok.encode([s for s, _ in pairs])

    rows, torch_hyps = [], None
    for e in engines:
        print(f"{e.name} ({e.provider}) ...", file=sys.stderr, flush=True)
        r = measure(e, ids, args.latency_n, args.batch)
        hyps = r.pop("hyps")
        if e.kind == "pytorch":
            torch_hyps = hyps
        r.update(name=e.name, kind=e.kind, provider=e.provider, meta=e.meta, **{"bleu": bleu_chrf(tok.decode(hyps), refs)["bleu"]})
        if e.meta.get("weights_of") not in (None, "base"):
            r["identical_to_torch"] = "other weights"  # a compressed variant: see parity_variants.md
        elif torch_hyps is not None:
            r["identical_to_torch"] = f"{sum(a == b for a, b in zip(hyps, torch_hyps, strict=True))}/{len(hyps)}"
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "meta"}), file=sys.stderr, flush=True)

    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    for mod in ("torch", "ctranslate2"):
        if mod in sys.modules:
            versions[mod] = sys.modules[mod].__version__
    result = {"device": args.device, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "cpu": cpu_name(), "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
              "loadavg_before": loadavg_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
              "threads": args.threads, "latency_n": args.latency_n, "sentences": len(ids), "batch": args.batch,
              "versions": versions, "engines": rows}
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out_prefix}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{out_prefix}.md").write_text(markdown(result))
    print(markdown(result))



if __name__ == "__main__":
    main()
