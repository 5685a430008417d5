"""The locust runner end to end, briefly: it starts the service, loads it, and writes CSV, HTML, summary."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root


ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_writes_per_variant_results_without_failures(variants_root, tmp_path):
    cmd = [
        sys.executable, "benchmarks/locust/run.py", "--label", "smoke", "--variants", "tiny,tiny-int8",
        "--users", "4", "--time", "3", "--port", str(free_port()), "--out", str(tmp_path),
        "--env", f"TZIP_MODEL_ROOT={variants_root}", "--ready-timeout", "60",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "smoke"
    for name in ("locust_stats.csv", "locust_failures.csv", "report.html", "summary.json", "service.log"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    per = summary["variants"]
    assert {"tiny", "tiny-int8", "Aggregated"} <= set(per)
    for v in ("tiny", "tiny-int8"):
        assert per[v]["requests"] > 0 and per[v]["other_failures"] == 0
        assert per[v]["p95_ms"] > 0 and per[v]["mean_batch_size"] >= 1
    report = subprocess.run([sys.executable, "benchmarks/locust/run.py", "--report", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0 and "| smoke | tiny |" in (tmp_path / "results.md").read_text()
