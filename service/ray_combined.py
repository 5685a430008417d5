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
from .ray_board import report_forever, state_elsewhere
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
        self._reporter = asyncio.get_running_loop().create_task(report_forever(self._report, self._keep_reports))
        await super().preload()

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await super().close()

    def describe_one(self, v: Variant) -> dict[str, Any]:
        info = super().describe_one(v)
        if info["state"] not in ("loaded", "loading"):
            info.update(state_elsewhere(self.reports, v.name) or {})
        return info

    def _report(self) -> dict[str, Any]:
        """This replica's own metrics and variant states (not the merged ones: a state seen elsewhere must not
        echo back through this replica's report after the other replica dropped it)."""
        own = (VariantRegistry.describe_one(self, v) for v in self.variants())
        states = {d["name"]: d for d in own if d["state"] != "available"}
        return {"role": "server", "exposition": self.cluster_metrics.own(), "variants": states}

    def _keep_reports(self, reports: dict[str, dict[str, Any]]) -> None:
        self.reports = reports


def server_app() -> FastAPI:
    """Built on each ``Server`` replica: the single-process app, its registry reporting to the board."""
    s = load_ray_settings()
    settings = s.model_copy(update={"ort_threads": s.replica_ort_threads})

    def registry(_s: Any, m: Any, loader: Any, lister: Any) -> ReplicaRegistry:
        return ReplicaRegistry(settings, m)

    return create_app(settings, registry_factory=registry, metrics=ClusterMetrics())


Server = serve.deployment(name=SERVER)(serve.ingress(server_app)())
