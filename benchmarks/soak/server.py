"""Start ``python -m service`` on a free port for a benchmark and stop it afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@contextlib.contextmanager
def service(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    full = {**os.environ, "PYTHONPATH": str(ROOT), "TZIP_PORT": str(port), "TZIP_LOG_LEVEL": "warning", **env}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=full, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"the service exited with {proc.returncode}; see {log}")
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"the service was not ready in 300 s; see {log}")
        for _ in range(600):  # readiness means the default; a benchmark wants every preloaded variant
            if all(v["state"] in ("loaded", "broken") for v in get(f"{url}/variants")):  # type: ignore[union-attr]
                break
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
