"""The board of a Ray Serve deployment: a named actor every replica reports its metrics and variant states to
once a second, and reads the others' from (service/ray_metrics.py merges them for /metrics and /variants)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray import serve

log = logging.getLogger(__name__)
REPORT_EVERY_S = 1.0
STALE_AFTER_S = 30.0  # a replica silent this long is gone (scaled down or dead): its report is dropped


def replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


async def report_forever(payload: Any) -> None:
    """Send ``payload()`` to the board every REPORT_EVERY_S (a lost report is only a stale second)."""
    me = replica_id()
    while True:
        try:
            await board().put.remote(me, payload())
        except Exception as e:  # the board restarting must never take a replica down
            log.warning("metrics report failed: %s", e)
            board_cache.clear()
        await asyncio.sleep(REPORT_EVERY_S)


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
