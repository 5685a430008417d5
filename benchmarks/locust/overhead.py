"""The service's own cost per request: POST /translate with a translator that answers at once.

    python benchmarks/locust/overhead.py          # -> benchmarks/locust/overhead.{json,md}

The real app (routes, validation, segmentation, the work check, batcher, metrics, middleware, uvicorn with
uvloop + httptools, one process) over two tiny exports, but each variant's ``translate`` returns its inputs
reversed: what is left is what one process can answer per second whatever the GPU does (the single-process
ceiling of the H200 runs). Load: ``benchmarks/locust/locustfile.py`` (Multi30k test sentences, 1 and 8 per request)
in one headless locust process beside the server; on a 2-core machine they share the cores, so read the figures
as relative (before / after a change, same machine), and ``load_average`` records the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def serve(port: int, root: Path) -> None:
    """The app with instant translators, on 127.0.0.1:port (runs until killed)."""
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from compression.runtime.translator import OnnxTranslator
    from tests.service_helpers import build_root, make_app

    if not (root / "tiny").exists():
        build_root(root)

    class Instant:
        def __init__(self, inner: OnnxTranslator):
            self.inner, self.provider, self.tokenizer, self.name = inner, inner.provider, inner.tokenizer, inner.name

        def translate(self, texts: list[str], cfg: object, batch_size: int) -> list[str]:
            return [t[::-1] for t in texts]

    def loader(*args: object, **kw: object) -> Instant:
        return Instant(OnnxTranslator(*args, **kw))  # type: ignore[arg-type]

    app = make_app(root, loader=loader, max_batch_size=256, max_wait_ms=2, max_queue=8192)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools")


def measure(port: int, texts: int, users: int, seconds: int, workdir: Path) -> dict:
    prefix = workdir / f"texts{texts}"
    env = {**os.environ, "TZIP_LOCUST_VARIANTS": "tiny", "TZIP_LOCUST_TEXTS": str(texts)}
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks/locust/locustfile.py"), "--headless",
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}",
           "--csv", str(prefix), "--only-summary"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    rps = float(row["Requests/s"])
    return {"texts": texts, "users": users, "seconds": seconds, "requests_s": round(rps, 1),
            "sentences_s": round(rps * texts, 1), "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]),
            "failures": int(row["Failure Count"]), "load_average": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "tzip-overhead-root")
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2, help="runs per request size (the median is reported)")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/locust/overhead"))
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.root)
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(args.port), "--root", str(args.root)])
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for texts in (1, 8):
                runs = [measure(args.port, texts, args.users, args.seconds, Path(tmp)) for _ in range(args.rounds)]
                rows.append(sorted(runs, key=lambda r: r["requests_s"])[len(runs) // 2] | {"runs": runs})
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    command = "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(ROOT))] + sys.argv[1:])
    result = {"command": command, "python": platform.python_version(), "cpus": os.cpu_count(), "rows": rows}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The service's own cost: POST /translate with a translator that answers at once", "",
             f"Command: `{command}` ({os.cpu_count()} CPUs, locust and the server on the same cores)", "",
             "| texts per request | requests/s | sentences/s | p50 ms | p95 ms | failures | load |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['texts']} | {r['requests_s']} | {r['sentences_s']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['failures']} | {r['load_average']} |" for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
