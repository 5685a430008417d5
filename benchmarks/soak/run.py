"""The soak: the service with every export, locust for --minutes, the process's RSS sampled every 10 s.

    PYTHONPATH=. python benchmarks/soak/run.py --minutes 10 --users 12 --out benchmarks/soak/cpu

Writes under --out: locust's CSVs, rss.csv (seconds, rss bytes, budget), rss.png, metrics.txt (the
service's /metrics at the end), variants.json, and summary.json: failures by kind, p50/p95 per request
kind, RSS at start/peak/end against the budget, and RSS growth over the last 5 minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import get, service  # noqa: E402

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def sample(pid: int, every: float, rows: list, stop: threading.Event) -> None:
    start = time.monotonic()
    while not stop.is_set():
        try:
            rows.append((round(time.monotonic() - start, 1), rss(pid)))
        except OSError:
            return
        stop.wait(every)


def plot(rows: list, budget: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t / 60 for t, _ in rows], [r / 2**20 for _, r in rows], label="service RSS")
    ax.axhline(budget / 2**20, color="red", linestyle="--", label="TZIP_MEMORY_BUDGET_MB")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(0, budget / 2**20 * 1.1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def stats(out: Path) -> dict:
    rows = {r["Name"]: r for r in csv.DictReader(open(out / "locust_stats.csv"))}
    return {n: {"requests": int(r["Request Count"]), "failures": int(r["Failure Count"]),
                "p50_ms": float(r["50%"]), "p95_ms": float(r["95%"]), "max_ms": float(r["Max Response Time"])}
            for n, r in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="build/onnx")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--users", type=int, default=12)
    p.add_argument("--budget-mb", type=int, default=1024)
    p.add_argument("--out", type=Path, default=HERE / "cpu")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    budget = a.budget_mb * 2**20
    env = {"TZIP_MODEL_ROOT": a.root, "TZIP_PRELOAD": "all", "TZIP_MEMORY_BUDGET_MB": str(a.budget_mb)}
    rows: list = []
    stop = threading.Event()
    with service(env, a.out / "service.log") as (url, proc):
        sampler = threading.Thread(target=sample, args=(proc.pid, 10, rows, stop), daemon=True)
        sampler.start()
        locust = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "-u", str(a.users),
                  "-r", "4", "-t", f"{int(a.minutes * 60)}s", "--host", url, "--csv", str(a.out / "locust"),
                  "--only-summary", "--stop-timeout", "120"]
        subprocess.run(locust, check=False, stdout=open(a.out / "locust.log", "w"), stderr=subprocess.STDOUT)
        stop.set()
        (a.out / "metrics.txt").write_text(urllib.request.urlopen(f"{url}/metrics").read().decode())
        (a.out / "variants.json").write_text(json.dumps(get(f"{url}/variants"), indent=1) + "\n")
    with open(a.out / "rss.csv", "w") as f:
        f.write("seconds,rss_bytes,budget_bytes\n" + "".join(f"{t},{r},{budget}\n" for t, r in rows))
    last5 = [r for t, r in rows if t >= rows[-1][0] - 300]
    summary = {
        "command": " ".join(["python"] + sys.argv), "minutes": a.minutes, "users": a.users, "budget_bytes": budget,
        "requests": stats(a.out),
        "rss": {"start": rows[0][1], "peak": max(r for _, r in rows), "end": rows[-1][1],
                "growth_last_5_min": round(last5[-1] / last5[0] - 1, 4), "peak_over_budget": max(r for _, r in rows) > budget},
        "load": os.getloadavg(),
    }
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(rows, budget, a.out / "rss.png", f"soak: {a.minutes:g} min, {a.users} users, every variant")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
