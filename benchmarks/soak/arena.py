"""Resident memory of ONNX Runtime sessions under each allocator setting (the choice behind TZIP_ORT_CPU_ARENA).

For each setting, in a fresh process: load every export under ROOT (RSS growth per variant), then run
REQUESTS maximum-size translations on one variant (RSS after each, and after malloc_trim), and write one
JSON record. Usage:

    PYTHONPATH=. python benchmarks/soak/arena.py --root build/onnx --out benchmarks/soak/arena.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {"arena": {"cpu_arena": True}, "no-arena": {"cpu_arena": False}}
TEXT = ("A man in a blue shirt is standing on a ladder and cleaning the windows of a tall building while "
        "two children watch him from the street below. ")


def probe(root: str, setting: str, variant: str, requests: int, texts: int, beam: int, chars: int) -> dict:
    from compression.runtime import catalogue
    from compression.runtime.search import SearchConfig
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.translator import OnnxTranslator
    from service.memory import rss_bytes, trim

    sessions = SessionFactory("cpu", threads=2, spin=False, **SETTINGS[setting])
    loaded, per_variant = {}, {}
    for m in catalogue.list_exported(root):
        before = rss_bytes()
        t = OnnxTranslator(m["path"], sessions)
        t.translate(["A man is riding a bike."], SearchConfig(), 1)
        loaded[m["name"]], per_variant[m["name"]] = t, rss_bytes() - before
    after_load = rss_bytes()
    body = [(TEXT * 10)[:chars]] * texts
    cfg = SearchConfig(beam=beam, max_len=512)
    runs = []
    for _ in range(requests):
        start = time.perf_counter()
        loaded[variant].translate(body, cfg, 8)  # 8 sentences x beam 8 = 64 rows a call, as the service does
        took = time.perf_counter() - start
        rss = rss_bytes()
        trim()
        runs.append({"seconds": round(took, 2), "rss": rss, "rss_after_trim": rss_bytes()})
    return {"setting": setting, "variants": len(loaded), "rss_after_load": after_load, "per_variant": per_variant,
            "request": {"variant": variant, "texts": texts, "chars": chars, "beam": beam}, "runs": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="build/onnx")
    p.add_argument("--out", default=None, help="JSON file (default: print)")
    p.add_argument("--variant", default="base")
    p.add_argument("--requests", type=int, default=3)
    p.add_argument("--texts", type=int, default=16)
    p.add_argument("--chars", type=int, default=200)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one setting
    a = p.parse_args()
    if a.one:
        print(json.dumps(probe(a.root, a.one, a.variant, a.requests, a.texts, a.beam, a.chars)))
        return 0
    records = []
    for setting in SETTINGS:
        args = [sys.executable, __file__, "--one", setting, "--root", a.root, "--variant", a.variant,
                "--requests", str(a.requests), "--texts", str(a.texts), "--chars", str(a.chars), "--beam", str(a.beam)]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        records.append(json.loads(out.strip().splitlines()[-1]))
        r = records[-1]
        print(f"{setting}: {r['variants']} variants {r['rss_after_load'] / 2**20:.0f} MB; after requests "
              + ", ".join(f"{x['rss'] / 2**20:.0f}/{x['rss_after_trim'] / 2**20:.0f} MB ({x['seconds']} s)" for x in r["runs"]),
              file=sys.stderr)
    text = json.dumps({"command": " ".join(["python"] + sys.argv), "records": records}, indent=1) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
