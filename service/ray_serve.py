"""The service on Ray Serve: the same FastAPI app, its variants multiplexed over translator replicas.

Two deployments make one Serve application (``TZIP_RAY_MODE=split``, the default):

- ``Ingress`` (``@serve.ingress`` over ``service.main.create_app``): the same routes, schemas, limits,
  error answers and middleware as ``python -m service``. Only its registry differs: ``RemoteRegistry``
  knows the variants from their manifests (404 for an unknown one, /variants, /attention locally) and
  sends each translation to the translator replicas with ``?variant=`` as the multiplexed model id.
- ``Translator``: each replica loads variants through ``@serve.multiplexed`` (LRU, at most
  TZIP_RAY_MODELS_PER_REPLICA) into an ordinary ``VariantRegistry`` and batches each variant with the
  service's ``DynamicBatcher``, so Ray routes a variant's requests to the replicas that hold it and
  every replica batches, sheds and reports exactly as the single process does. A variant a replica
  cannot load answers 503 for that variant only.
- ``Board`` (a plain Ray actor): collects each replica's metrics and variant states once a second, which
  /metrics and /variants merge (service/ray_metrics.py).

``TZIP_RAY_MODE=combined``: one deployment, ``Server``, each replica the whole single-process service (the same
app over an ordinary ``VariantRegistry``, batcher included) behind the same proxy; the replicas report to the board
so /metrics and /variants cover all of them. A request then crosses one Python process instead of two (the split
mode's Ray handle call per request cost more CPU than the request's own work: benchmarks/locust/ray).

``python -m service.ray_serve`` (``make serve-ray``) starts a local cluster (or joins TZIP_RAY_ADDRESS)
and serves on TZIP_HOST:TZIP_PORT; ``serve run deploy/serve.yaml`` builds the same app through ``app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from compression.runtime.attention import OnnxAttention
from compression.runtime.search import SearchConfig

from .batcher import BatchResult, Overloaded
from .main import create_app
from .metrics import Metrics
from .ray_board import report_forever, state_elsewhere
from .ray_metrics import ClusterMetrics
from .ray_settings import RaySettings, load_ray_settings
from .registry import Variant, VariantRegistry, VariantUnavailable
from .settings import SettingsError

log = logging.getLogger(__name__)
TRANSLATOR, INGRESS = "Translator", "Ingress"
# Ray Serve's per-request overhead, trimmed: user code and the handle router on the replica's own event loop
# (two thread hops less per call); the service counts and logs requests itself, so no access log line each.
# Workers at the driver's niceness, not Ray's default 15 (on a shared machine that would hand the replicas' CPU
# to every other process), the controller's loop at 2 Hz instead of 10 (11% of a core on 2 cores), and HAProxy in
# front of the ingress replicas instead of Serve's Python proxy (1.5x the requests/s on 2 cores:
# benchmarks/locust/ray). Each is only a default: a variable already set wins.
RAY_FLAGS = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
             "RAY_worker_niceness": "0", "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5", "RAY_USAGE_STATS_ENABLED": "0",
             "RAY_SERVE_ENABLE_HA_PROXY": "1"}
QUIET = {"enable_access_log": False, "log_level": "WARNING"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a translator replica answers: a batch result, or the reason it could not serve (mapped back to the
    service's own exceptions in the ingress, so the error answers are the single process's)."""

    result: BatchResult | None = None
    provider: str = "unknown"
    unavailable: str | None = None
    overloaded: str | None = None
    retry_after: int | None = None

    def check(self) -> Outcome:
        if self.overloaded is not None:
            raise Overloaded(self.overloaded, self.retry_after or 1)
        if self.unavailable is not None:
            raise VariantUnavailable(self.unavailable, self.retry_after)
        return self

    def unwrap(self) -> tuple[BatchResult, str]:
        result = self.check().result
        if result is None:
            raise VariantUnavailable("the translator replica answered no result; retry", 1)
        return result, self.provider


# -- translator replicas -------------------------------------------------------------------------------


class Held:
    """One multiplexed variant; Ray's LRU calls ``__del__`` when it evicts it, and the registry unloads it."""

    def __init__(self, registry: VariantRegistry, variant: Variant):
        self.registry, self.variant = registry, variant
        self._loop = asyncio.get_running_loop()
        self._released = False

    def __del__(self) -> None:  # Ray runs it in a thread: hand the unload to the replica's loop
        if not self._released:
            self._released = True
            with contextlib.suppress(RuntimeError):  # the loop is closed at shutdown
                self._loop.call_soon_threadsafe(self._loop.create_task, self.registry.unload(self.variant.name))


def translator_deployment(models_per_replica: int) -> Any:
    """The translator class; built here because ``@serve.multiplexed`` takes its LRU size at definition."""

    class Translator:
        def __init__(self) -> None:
            s = load_ray_settings()
            self.settings = s.model_copy(update={"ort_threads": s.replica_ort_threads, "preload": []})
            self.metrics = Metrics()
            self.registry = VariantRegistry(self.settings, self.metrics)
            self.registry.discover()
            self._reporter = asyncio.get_running_loop().create_task(report_forever(self.report))

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def variant(self, name: str) -> Held:
            v = self.registry.resolve(name)
            async with self.registry.use(v):  # loads, verifies and warms it up (VariantUnavailable if refused)
                pass
            return Held(self.registry, v)

        async def load(self) -> Outcome:
            """Load the request's variant (multiplexed) and say which provider runs it."""
            try:
                held = await self.variant(serve.get_multiplexed_model_id())
                return Outcome(provider=held.variant.provider or "unknown")
            except VariantUnavailable as e:
                return Outcome(unavailable=str(e), retry_after=e.retry_after)

        async def translate(self, texts: list[str], cfg: SearchConfig, timeout_s: float) -> Outcome:
            try:
                held = await self.variant(serve.get_multiplexed_model_id())
                async with self.registry.use(held.variant) as loaded:
                    result = await loaded.submit(texts, cfg, timeout_s)
                    return Outcome(result, loaded.provider or "unknown")
            except Overloaded as e:
                return Outcome(overloaded=str(e), retry_after=e.retry_after)
            except VariantUnavailable as e:
                return Outcome(unavailable=str(e), retry_after=e.retry_after)

        def report(self) -> dict[str, Any]:
            states = {d["name"]: d for d in self.registry.describe() if d["state"] != "available"}
            return {"role": "translator", "exposition": self.metrics.exposition().decode(), "variants": states,
                    "device": self.registry.device}

    return serve.deployment(name=TRANSLATOR)(Translator)


# -- the ingress -----------------------------------------------------------------------------------------


class RemoteVariant:
    """What ``RemoteRegistry.use`` yields to the routes: ``submit`` runs on a translator replica; for
    /attention the variant is opened in the ingress (a diagnostic, not the throughput path)."""

    def __init__(self, registry: RemoteRegistry, variant: Variant, stack: contextlib.AsyncExitStack):
        self.registry, self.variant, self.stack = registry, variant, stack
        self.name, self.provider = variant.name, registry.provider_of(variant.name)

    async def submit(self, texts: list[str], cfg: SearchConfig, timeout_s: float) -> BatchResult:
        outcome: Outcome = await self.registry.handle(self.name).translate.remote(texts, cfg, timeout_s)
        result, self.provider = outcome.unwrap()
        self.registry.providers[self.name] = self.provider
        return result

    @property
    def translator(self) -> Any:
        return self.variant.translator  # loaded by RemoteRegistry.attention


class RemoteRegistry:
    """The registry interface the routes use, served by the translator deployment."""

    def __init__(self, settings: RaySettings, metrics: ClusterMetrics, translator: DeploymentHandle):
        self.local = VariantRegistry(settings, metrics)  # manifests, names, the default; /attention only
        self.settings, self.metrics, self.translator = settings, metrics, translator
        self._handles: dict[str, DeploymentHandle] = {}
        self.providers: dict[str, str] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.ready = False
        self.not_ready_reason = "starting: warming up the default variant on a translator replica"
        self._reporter: asyncio.Task[None] | None = None
        metrics.others = self._other_expositions

    # start-up and shutdown, as create_app's lifespan calls them
    def discover(self) -> None:
        self.local.discover()

    async def preload(self) -> None:
        own = lambda: {"role": "ingress", "exposition": self.metrics.own()}  # noqa: E731
        self._reporter = asyncio.get_running_loop().create_task(report_forever(own, self._keep_reports))
        for name in self.local.preload_names():
            try:
                _, self.providers[name] = (await self.handle(name).translate.remote(["A dog runs."], SearchConfig(), 600)).unwrap()
                if name == self.default:
                    self.ready, self.not_ready_reason = True, ""
            except Exception as e:
                log.error("warming up %s on a translator replica failed: %s", name, e)
                if name == self.default:
                    self.not_ready_reason = f"default variant {name!r} failed to load: {e}"

    async def watch_memory(self) -> None:
        """The ingress holds attention sessions only: its own budget, as the single-process service's."""
        await self.local.watch_memory()

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await self.local.close()

    # what the routes use
    @property
    def default(self) -> str:
        return self.local.default

    @property
    def device(self) -> str:
        """The translator replicas' device (what /readyz reports)."""
        devices = sorted({r["device"] for r in self.reports.values() if "device" in r})
        return ",".join(devices) or self.settings.device

    @property
    def names(self) -> list[str]:
        return self.local.names

    def resolve(self, name: str | None) -> Variant:
        return self.local.resolve(name)  # UnknownVariant -> 404 here, before any replica is asked

    def handle(self, name: str) -> DeploymentHandle:
        if name not in self._handles:
            self._handles[name] = self.translator.options(multiplexed_model_id=name)
        return self._handles[name]

    def provider_of(self, name: str) -> str:
        return self.providers.get(name, "unknown")

    @contextlib.asynccontextmanager
    async def use(self, v: Variant) -> AsyncIterator[RemoteVariant]:
        """Like the local registry's: the variant is loaded (here: on a translator replica) before the route runs,
        so a refused one is 503 and the provider is known."""
        if v.name not in self.providers:
            self.providers[v.name] = (await self.handle(v.name).load.remote()).check().provider
        async with contextlib.AsyncExitStack() as stack:
            yield RemoteVariant(self, v, stack)

    async def attention(self, rv: RemoteVariant) -> OnnxAttention:
        await rv.stack.enter_async_context(self.local.use(rv.variant))  # held until the route's `use` ends
        return await self.local.attention(rv.variant)

    def describe(self) -> list[dict[str, Any]]:
        return [self.describe_one(self.local.resolve(n)) for n in self.names]

    def describe_one(self, v: Variant) -> dict[str, Any]:
        """The manifest's figures, with the state over all translator replicas (loaded on any wins)."""
        info = self.local.describe_one(v)
        info.update(state_elsewhere(self.reports, v.name) or
                    {"state": "available", "loaded": False, "provider": None, "error": None})
        return info

    def _keep_reports(self, reports: dict[str, dict[str, Any]]) -> None:
        self.reports = reports

    def _other_expositions(self) -> list[str]:
        return [r["exposition"] for r in self.reports.values()]


def ingress_app() -> FastAPI:
    """Built on each ingress replica (Ray calls it there): the service's app with the remote registry."""
    settings = load_ray_settings()
    ctx = serve.get_replica_context()
    translator = serve.get_deployment_handle(TRANSLATOR, app_name=ctx.app_name)

    def registry(s: Any, m: Any, loader: Any, lister: Any) -> RemoteRegistry:
        return RemoteRegistry(settings, m, translator)

    return create_app(settings, registry_factory=registry, metrics=ClusterMetrics())


Ingress = serve.deployment(name=INGRESS)(serve.ingress(ingress_app)())


# -- assembly and start-up -------------------------------------------------------------------------------


def build(settings: RaySettings) -> Any:
    """The Serve application: Ingress -> Translator (multiplexed), or Server replicas (combined); every replica
    reports to the board actor."""
    if settings.ray_mode == "combined":
        from .ray_combined import Server

        return Server.options(**settings.translator_options()).bind()
    translator = translator_deployment(settings.ray_models_per_replica).options(**settings.translator_options())
    return Ingress.options(**settings.ingress_options()).bind(translator.bind())


def app(args: dict[str, str] | None = None) -> Any:
    """Application builder of ``serve run service.ray_serve:app`` / deploy/serve.yaml (settings: TZIP_* env)."""
    return build(load_ray_settings(**(args or {})))


def main() -> int:
    try:
        settings = load_ray_settings()
    except SettingsError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        VariantRegistry(settings, Metrics()).discover()  # bad exports: a clean message before Ray starts
    except Exception as e:
        sys.stderr.write(f"tzip service cannot start: {e}\n")
        return 2
    haproxy = f"/tmp/haproxy-serve-{settings.port}"  # Ray's default folder would be shared by two services
    files = {"CONFIG_FILE_LOC": "haproxy.cfg", "SOCKET_PATH": "admin.sock", "SERVER_STATE_FILE": "server-state",
             "METRICS_SOCKET_PATH": "metrics.sock"}
    flags = {**RAY_FLAGS, "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": haproxy,
             **{f"RAY_SERVE_HAPROXY_{k}": f"{haproxy}/{v}" for k, v in files.items()}}
    for flag, value in flags.items():  # the cluster's processes inherit them (a running cluster: set them there)
        os.environ.setdefault(flag, value)
    ray.init(address=settings.ray_address or "local", num_cpus=None if settings.ray_address else settings.local_cpus,
             include_dashboard=False,
             log_to_driver=settings.log_level == "debug")
    serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config=QUIET)
    serve.run(build(settings), name="tzip", route_prefix="/", logging_config=QUIET)
    log.warning("tzip on Ray Serve: http://%s:%d (%d %s replicas)", settings.host, settings.port,
                settings.ray_replicas, "server" if settings.ray_mode == "combined" else "translator")
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
