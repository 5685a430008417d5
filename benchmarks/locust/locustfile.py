"""Locust load test of POST /translate with real Multi30k test sentences, spread over variants.

Each simulated user sends one request after another (no think time unless TZIP_LOCUST_WAIT is set),
choosing the variant round-robin, so every variant gets the same load; stats are kept per variant
under the name "/translate?variant=NAME". A 503 is the service shedding load on purpose: it is
recorded as a failure whose message starts with "503 shed", so summaries can tell it from a real one.

Environment: TZIP_LOCUST_VARIANTS (comma-separated; default: every variant GET /variants lists),
TZIP_LOCUST_TEXTS (sentences per request, default 1), TZIP_LOCUST_BEAM (default 1),
TZIP_LOCUST_WAIT (seconds between a user's requests, default 0), TZIP_LOCUST_DATA (a .en or .en.gz file).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import urllib.request
from pathlib import Path

from locust import FastHttpUser, constant, events, task

DATA = Path(os.environ.get("TZIP_LOCUST_DATA", Path(__file__).resolve().parents[2] / "data/multi30k/test_2016_flickr.en.gz"))
TEXTS = int(os.environ.get("TZIP_LOCUST_TEXTS", "1"))
BEAM = int(os.environ.get("TZIP_LOCUST_BEAM", "1"))
WAIT = float(os.environ.get("TZIP_LOCUST_WAIT", "0"))
SHED = "503 shed"


def read_sentences(path: Path) -> list[str]:
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    lines = [s.strip() for s in raw.decode("utf-8").splitlines()]
    return [s for s in lines if s]


SENTENCES = read_sentences(DATA)
VARIANTS: list[str] = [v for v in os.environ.get("TZIP_LOCUST_VARIANTS", "").split(",") if v]
_next_variant = itertools.cycle(VARIANTS) if VARIANTS else None


@events.test_start.add_listener
def _discover(environment, **_kw) -> None:
    """Without TZIP_LOCUST_VARIANTS: every variant the service lists (and did not refuse)."""
    global _next_variant
    if not VARIANTS and environment.host:
        with urllib.request.urlopen(f"{environment.host}/variants", timeout=30) as r:
            VARIANTS.extend(v["name"] for v in json.load(r) if v["state"] != "broken")
        _next_variant = itertools.cycle(VARIANTS)


class Translator(FastHttpUser):
    wait_time = constant(WAIT)

    @task
    def translate(self) -> None:
        variant = next(_next_variant) if _next_variant else None  # None: the service's default
        texts = random.sample(SENTENCES, TEXTS)
        body = {"text": texts[0]} if TEXTS == 1 else {"texts": texts}
        body["beam"] = BEAM
        name = f"/translate?variant={variant}" if variant else "/translate"
        with self.client.post(name, json=body, name=name, catch_response=True) as r:
            if r.status_code == 503:
                r.failure(f"{SHED} (deliberate: queue full or request timed out), Retry-After {r.headers.get('Retry-After')}")
            elif r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
            else:
                got = r.json()
                if len(got.get("translations", [])) != TEXTS:
                    r.failure(f"expected {TEXTS} translations, got {got.get('translations')!r}")
