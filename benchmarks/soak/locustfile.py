"""Soak load: every variant, mixed sizes, including the largest requests the service accepts and one over the limit.

    small  (most users): one sentence or six at beam 4, to a random variant, no think time beyond 0.1-0.5 s
    big    (one user): in turn the largest greedy request (64 paragraphs), the largest beam-8 request
           (9 paragraphs), and the issue's 64 x 1,000 characters at beam 8 (over the limit: 413 expected)
Request names in the stats: small, medium, max-greedy, max-beam8, over-limit.
"""

from __future__ import annotations

import json
import random
import sys
import urllib.request
from pathlib import Path

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import MAX_BEAM, MAX_GREEDY, MEDIUM, OVER_LIMIT, SMALL  # noqa: E402

VARIANTS: list[str] = []


@events.test_start.add_listener
def _variants(environment, **_kw):
    with urllib.request.urlopen(f"{environment.host}/variants") as r:
        VARIANTS.extend(v["name"] for v in json.load(r) if v["state"] != "broken")


def post(user: HttpUser, name: str, body: dict, variant: str, expect: int = 200) -> None:
    with user.client.post(f"/translate?variant={variant}", json=body, name=name, catch_response=True,
                          timeout=120) as r:
        if r.status_code == expect:
            r.success()
        else:
            r.failure(f"{r.status_code}: {r.text[:200]}")


class Small(HttpUser):
    weight = 10
    wait_time = between(0.1, 0.5)

    @task(4)
    def small(self):
        post(self, "small", SMALL, random.choice(VARIANTS))

    @task(1)
    def medium(self):
        post(self, "medium", MEDIUM, random.choice(VARIANTS))


class Big(HttpUser):
    fixed_count = 1
    wait_time = between(2, 4)
    turn = 0

    @task
    def big(self):
        name, body, expect = [("max-greedy", MAX_GREEDY, 200), ("max-beam8", MAX_BEAM, 200),
                              ("over-limit", OVER_LIMIT, 413)][self.turn % 3]
        self.turn += 1
        post(self, name, body, random.choice(VARIANTS), expect)
