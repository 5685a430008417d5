"""The board of a Ray Serve deployment: a named actor every replica reports its metrics and variant states to
once a second, and reads the others' from (service/ray_metrics.py merges them for /metrics and /variants)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve

log = logging.getLogger(__name__)
REPORT_EVERY_S = 1.0
STALE_AFTER_S = 30.0  # a replica silent this long is gone (scaled down or dead): its report is dropped


def replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


async def report_forever(payload: Callable[[], dict[str, Any]],
                         others: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> None:
    """Send ``payload()`` to the board every REPORT_EVERY_S (a lost report is only a stale second); with
    ``others``, hand it the other replicas' latest reports each time."""
    me = replica_id()
    while True:
        try:
            await board().put.remote(me, payload())
            if others is not None:
                others({k: r for k, r in (await board().all.remote()).items() if k != me})
        except Exception as e:  # the board restarting must never take a replica down
            log.warning("metrics report failed: %s", e)
            board_cache.clear()
        await asyncio.sleep(REPORT_EVERY_S)


def state_elsewhere(reports: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A variant's state over the other replicas' reports (loaded on any wins, then loading, then refused), as
    /variants fields; None when no replica reports it."""
    seen = [r["variants"][name] for r in reports.values() if name in r.get("variants", {})]
    for state in ("loaded", "loading", "refused"):
        hit = next((d for d in seen if d["state"] == state), None)
        if hit is not None:
            return {"state": state, "loaded": state == "loaded", "provider": hit["provider"], "error": hit["error"]}
    return None


# -- the board -----------------------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class Board:
    """A plain named actor (a Serve replica's own machinery would cost more CPU than its few calls a second);
    the first replica that asks creates it, and whoever finds it gone creates it again."""

    def __init__(self) -> None:
        self.reports: dict[str, tuple[float, dict[str, Any]]] = {}

    def put(self, replica: str, report: dict[str, Any]) -> None:
        self.reports[replica] = (time.monotonic(), report)

    def all(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        self.reports = {k: v for k, v in self.reports.items() if now - v[0] < STALE_AFTER_S}
        return {k: v[1] for k, v in self.reports.items()}


board_cache: list[Any] = []


def board() -> Any:
    if not board_cache:
        name = f"tzip-board-{serve.get_replica_context().app_name}"
        board_cache.append(Board.options(name=name, get_if_exists=True).remote())  # type: ignore[attr-defined]
    return board_cache[0]
