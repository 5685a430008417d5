"""Start the service locally, run locust headless against it for a bounded time, write CSV + HTML + summary.

    python benchmarks/locust/run.py --label kmeans4 --variants kmeans4 --users 64 --time 60
    python benchmarks/locust/run.py --label fp32-batch1 --variants fp32 --env TZIP_MAX_BATCH_SIZE=1
    python benchmarks/locust/run.py --label ray --server ray --variants kmeans4 --env TZIP_RAY_REPLICAS=2
    python benchmarks/locust/run.py --report benchmarks/locust/cpu   # results.md from the summaries

Writes under ``--out/<label>/``: locust's ``stats.csv``, ``stats_history.csv``, ``failures.csv``,
``report.html``, the service log, and ``summary.json`` (per variant: requests/s, sentences/s,
p50/p95/p99, deliberate 503s and other failures, mean batch size from the service's /metrics).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def free_port() -> int:
    """A port nobody listens on now (a fixed one could reach another run's server and mix the loads)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with code {server.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service was not ready within {timeout:g} s")


def warm(url: str, variants: list[str]) -> None:
    """Load every variant before the clock starts (lazy loading is not what the load test measures)."""
    for v in variants:
        req = urllib.request.Request(
            f"{url}/translate?variant={v}", data=json.dumps({"text": "A dog runs."}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()


def scrape_batches(url: str) -> dict[str, dict[str, float]]:
    """Mean sentences per inference call and calls, per variant, from the service's histogram."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out: dict[str, dict[str, float]] = {}
    for kind in ("sum", "count"):
        for m in re.finditer(rf'^tzip_batch_size_{kind}{{variant="([^"]+)"}} (\S+)$', text, re.M):
            out.setdefault(m.group(1), {})[kind] = float(m.group(2))
    return {
        v: {"inference_calls": d.get("count", 0), "mean_batch_size": d.get("sum", 0) / max(d.get("count", 0), 1)}
        for v, d in out.items()
    }


def summarize(prefix: Path, texts: int, batches: dict[str, dict[str, float]]) -> dict:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    failures = list(csv.DictReader(open(f"{prefix}_failures.csv")))
    per = {}
    for row in rows:
        name = row["Name"]
        shed = sum(int(f["Occurrences"]) for f in failures if f["Name"] == name and "503 shed" in f["Error"])
        if name == "Aggregated":
            shed = sum(int(f["Occurrences"]) for f in failures if "503 shed" in f["Error"])
        variant = name.split("variant=")[-1] if "variant=" in name else name
        reqs, fails = int(row["Request Count"]), int(row["Failure Count"])
        rps = float(row["Requests/s"])
        per[variant] = {
            "requests": reqs,
            "requests_per_s": round(rps, 2),
            "sentences_per_s": round((rps - float(row["Failures/s"])) * texts, 2),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]),
            "mean_ms": round(float(row["Average Response Time"]), 1),
            "deliberate_503": shed,
            "other_failures": fails - shed,
            **batches.get(variant, {}),
        }
    return per


def run(args: argparse.Namespace) -> Path:
    out = Path(args.out) / args.label
    out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TZIP_PORT": str(port), "TZIP_HOST": "127.0.0.1", "TZIP_LOG_LEVEL": "warning"}
    if args.variants:
        env["TZIP_PRELOAD"] = args.variants
        env["TZIP_LOCUST_VARIANTS"] = args.variants
    env["TZIP_LOCUST_TEXTS"] = str(args.texts)
    env["TZIP_LOCUST_BEAM"] = str(args.beam)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    log = open(out / "service.log", "w")
    module = "service.ray_serve" if args.server == "ray" else "service"
    server = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, server, args.ready_timeout)
        variants = args.variants.split(",") if args.variants else [
            v["name"] for v in json.load(urllib.request.urlopen(f"{url}/variants")) if v["state"] != "broken"
        ]
        warm(url, variants)
        prefix = out / "locust"
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "-u", str(args.users), "-r", str(args.spawn_rate or args.users), "-t", f"{args.time}s",
            "--csv", str(prefix), "--html", str(out / "report.html"), "--only-summary", "--stop-timeout", "10",
            *(["--processes", str(args.processes)] if args.processes > 1 else []),
        ]
        started, load_before = time.time(), os.getloadavg()
        subprocess.run(cmd, cwd=ROOT, env=env, check=False, stdout=open(out / "locust.log", "w"), stderr=subprocess.STDOUT)
        batches = scrape_batches(url)
        providers = {v["name"]: v["provider"] for v in json.load(urllib.request.urlopen(f"{url}/variants")) if v["loaded"]}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    summary = {
        "label": args.label,
        "command": "python benchmarks/locust/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "server": args.server,
        "users": args.users,
        "seconds": args.time,
        "texts_per_request": args.texts,
        "beam": args.beam,
        "service_env": {k: v for k, v in env.items() if k.startswith("TZIP_") and not k.startswith("TZIP_LOCUST")},
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}",
        "providers": providers,
        "loadavg_1m_before": round(load_before[0], 2),  # other work on the machine skews the figures
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "variants": summarize(prefix, args.texts, batches),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name in ("locust_exceptions.csv",):
        (out / name).unlink(missing_ok=True)  # always empty unless the locustfile itself crashed
    return out


def report(directory: Path) -> str:
    """results.md: one row per run and variant."""
    lines = [
        "| run | variant | users | s | load before | req/s | sentences/s | p50 ms | p95 ms | p99 ms | mean batch "
        "| 503 shed | other failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cmds = []
    summaries = sorted((json.loads(p.read_text()) for p in directory.glob("*/summary.json")), key=lambda s: s["started"])
    by_label = {s["label"]: s for s in summaries}
    notes = []
    for label, s in by_label.items():
        full = by_label.get(label.removesuffix("-batch1")) if label.endswith("-batch1") else None
        if full:
            v = next(iter(s["variants"]))
            a, b = full["variants"][v]["sentences_per_s"], s["variants"][v]["sentences_per_s"]
            notes.append(f"- dynamic batching on {v}: {a:g} sentences/s against {b:g} with TZIP_MAX_BATCH_SIZE=1 "
                         f"under the same load: {a / b:.2f}x")
    for s in summaries:
        prov = ", ".join(f"{k}: {v}" for k, v in s.get("providers", {}).items())
        cmds.append(f"- `{s['label']}`: `{s['command']}` ({s['machine']}; {prov}; {s['started']})")
        for v, r in s["variants"].items():
            if v == "Aggregated" and len(s["variants"]) == 2:
                continue
            lines.append(
                f"| {s['label']} | {v} | {s['users']} | {s['seconds']} | {s.get('loadavg_1m_before', '')} | "
                f"{r['requests_per_s']} | {r['sentences_per_s']} | {r['p50_ms']:g} | "
                f"{r['p95_ms']:g} | {r['p99_ms']:g} | {_fmt(r.get('mean_batch_size'))} | "
                f"{r['deliberate_503']} | {r['other_failures']} |"
            )
    head = "\n".join(notes) + "\n\n" if notes else ""
    return head + "\n".join(lines) + "\n\nCommands:\n\n" + "\n".join(cmds) + "\n"


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", help="run name (a folder under --out)")
    p.add_argument("--variants", default="", help="comma-separated variants to load (default: all listed)")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--spawn-rate", type=float, default=0, help="users started per second (default: all at once)")
    p.add_argument("--time", type=int, default=60, help="seconds of load")
    p.add_argument("--texts", type=int, default=1, help="sentences per request")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--processes", type=int, default=1, help="locust worker processes (the GPU run needs several)")
    p.add_argument("--server", choices=("single", "ray"), default="single",
                   help="python -m service, or the Ray Serve deployment (python -m service.ray_serve; TZIP_RAY_* settings)")
    p.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    p.add_argument("--ready-timeout", type=float, default=300)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service (repeatable)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/locust/cpu"))
    p.add_argument("--report", type=Path, help="write DIR/results.md from the summaries under DIR and exit")
    args = p.parse_args()
    if args.report:
        text = report(args.report)
        (args.report / "results.md").write_text(text)
        print(text)
        return 0
    if not args.label:
        p.error("--label is required")
    out = run(args)
    print(json.dumps(json.loads((out / "summary.json").read_text())["variants"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
