"""While one maximum-size request runs on one variant, how long do small requests to the other variants wait?

Starts the service with every export loaded, sends MAX_BEAM (9 paragraphs, beam 8: the largest beam-8
request the limits accept) to --big, and meanwhile one small request at a time to each other variant in
turn; reports their p50/p95/max. Each --config is one run (a JSON object of TZIP_* settings), e.g. the
old behaviour (no chunking: TZIP_MAX_BATCH_ROWS=4096) against the default, or two inference threads.

    PYTHONPATH=. python benchmarks/soak/interference.py --out benchmarks/soak/interference.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import get, service  # noqa: E402
from texts import MAX_BEAM, SMALL  # noqa: E402

CONFIGS = {
    "default (chunks of 32 rows, fair scheduler, 1 inference thread)": {},
    "no chunking (TZIP_MAX_BATCH_ROWS=4096: the service before)": {"TZIP_MAX_BATCH_ROWS": "4096"},
    "two inference threads (TZIP_INFERENCE_THREADS=2)": {"TZIP_INFERENCE_THREADS": "2"},
}


def run(url: str, big: str, others: list[str]) -> dict:
    done, out = threading.Event(), {}

    def heavy() -> None:
        start = time.perf_counter()
        r = httpx.post(f"{url}/translate?variant={big}", json=MAX_BEAM, timeout=300)
        out["big"] = {"status": r.status_code, "seconds": round(time.perf_counter() - start, 2),
                      "segments": r.json().get("segments")}
        done.set()

    t = threading.Thread(target=heavy)
    t.start()
    time.sleep(0.5)  # it is running
    lat, i = [], 0
    with httpx.Client(timeout=60) as c:
        while not done.is_set():
            v = others[i % len(others)]
            start = time.perf_counter()
            r = c.post(f"{url}/translate?variant={v}", json=SMALL)
            if not done.is_set():
                lat.append((time.perf_counter() - start, r.status_code))
            i += 1
    t.join()
    times = sorted(x for x, _ in lat)
    pct = lambda q: round(times[min(len(times) - 1, int(q * len(times)))] * 1000, 1) if times else None  # noqa: E731
    return {**out, "small": {"n": len(times), "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": pct(1.0),
                             "statuses": sorted({s for _, s in lat})}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="build/onnx")
    p.add_argument("--big", default="base")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    results = {}
    for label, env in CONFIGS.items():
        with service({"TZIP_MODEL_ROOT": a.root, "TZIP_PRELOAD": "all", "TZIP_MEMORY_BUDGET_MB": "4096", **env},
                     Path("/tmp/tzip-interference.log")) as (url, _):
            names = [v["name"] for v in get(f"{url}/variants") if v["state"] != "broken"]  # type: ignore[union-attr]
            results[label] = run(url, a.big, [n for n in names if n != a.big])
        print(f"{label}: {json.dumps(results[label])}", file=sys.stderr)
    text = json.dumps({"command": " ".join(["python"] + sys.argv), "results": results}, indent=1) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
