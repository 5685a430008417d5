"""``TZIP_RAY_MODE=combined``: every Ray Serve replica is the whole single-process service.

One deployment, ``Server``: each replica runs ``service.main.create_app`` over an ordinary ``VariantRegistry``
(routes, limits, errors, batcher, memory budget), behind the same proxy as the split mode, so a request crosses
one Python process instead of two. The replicas report to the board (``service.ray_board``): /metrics adds the
others' expositions, /variants their states. There is no ``@serve.multiplexed`` here: each replica loads the
variants it is asked for, within its memory budget (the split mode in ``service.ray_serve`` multiplexes them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from .main import create_app
from .ray_board import REPORT_EVERY_S, board, board_cache, replica_id
from .ray_metrics import ClusterMetrics
from .ray_settings import RaySettings, load_ray_settings
from .registry import Variant, VariantRegistry

log = logging.getLogger(__name__)
SERVER = "Server"



class ReplicaRegistry(VariantRegistry):
    """The single-process registry of one ``Server`` replica, reporting to the board: /metrics adds the other
    replicas' expositions and /variants their states (loaded on any replica wins), as the split mode's ingress."""

    def __init__(self, settings: RaySettings, metrics: ClusterMetrics):
        super().__init__(settings, metrics)
        self.reports: dict[str, dict[str, Any]] = {}
        self._reporter: asyncio.Task[None] | None = None
        metrics.others = lambda: [r["exposition"] for r in self.reports.values()]
        self.cluster_metrics = metrics

    async def preload(self) -> None:
        self._reporter = asyncio.get_running_loop().create_task(self._sync_forever())
        await super().preload()

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await super().close()

    def describe_one(self, v: Variant) -> dict[str, Any]:
        info = super().describe_one(v)
        if info["state"] in ("loaded", "loading"):
            return info
        seen = [r["variants"][v.name] for r in self.reports.values() if v.name in r.get("variants", {})]
        for state in ("loaded", "loading", "refused"):
            hit = next((d for d in seen if d["state"] == state), None)
            if hit is not None:
                info.update(state=state, loaded=state == "loaded", provider=hit["provider"], error=hit["error"])
                break
        return info

    async def _sync_forever(self) -> None:
        me = replica_id()
        while True:
            try:
                states = {d["name"]: d for d in super().describe() if d["state"] != "available"}
                report = {"role": "server", "exposition": self.cluster_metrics.own(), "variants": states}
                await board().put.remote(me, report)
                self.reports = {k: r for k, r in (await board().all.remote()).items() if k != me}
            except Exception as e:  # the board restarting must never take a replica down
                log.warning("metrics sync failed: %s", e)
                board_cache.clear()
            await asyncio.sleep(REPORT_EVERY_S)


def server_app() -> FastAPI:
    """Built on each ``Server`` replica: the single-process app, its registry reporting to the board."""
    s = load_ray_settings()
    settings = s.model_copy(update={"ort_threads": s.replica_ort_threads})

    def registry(_s: Any, m: Any, loader: Any, lister: Any) -> ReplicaRegistry:
        return ReplicaRegistry(settings, m)

    return create_app(settings, registry_factory=registry, metrics=ClusterMetrics())


Server = serve.deployment(name=SERVER)(serve.ingress(server_app)())
