"""Variant lifecycle: discovery by manifest, preloading, lazy loading, a resident-memory budget with LRU unloading.

Variants are found once at start-up by their manifests (``compression.runtime.catalogue.list_exported``) and
are known by the ``name`` recorded there; a client's ``?variant=`` is only ever compared with those
names, so it never reaches a file path. Loading hands the directory found at start-up to the loader
(``compression.runtime.translator.open_translator``), which checks every file's sha256 before it creates a
session. Broken artifacts (a manifest that cannot be read, a file that differs from its sha256, a graph
ONNX Runtime cannot open) are listed as ``broken`` with their error and answer 503 (retried after
``retry_failed_load_s``) while the others keep serving; every file is checked in the background at
start-up, so a broken variant shows before its first request. Concurrent first requests for a variant
wait on one lock and load it once. The budget counts resident memory (``memory.MemoryBook``): the
process at start, what each loaded variant measurably added, and a reserve for the inference calls;
when a load would exceed it (or the reserve grows), idle variants unload least recently used first
(the default one stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compression.runtime import manifest as manifest_lib
from compression.runtime.attention import OnnxAttention
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory, gpu_shared

from . import artifacts
from .artifacts import Loader, describe, number, pick_default, public_error, unreadable_manifests
from .batcher import BatchResult, DynamicBatcher
from .memory import MemoryBook, rss_bytes, trim
from .metrics import Metrics
from .scheduler import FairScheduler
from .settings import Settings, resolve_device

log = logging.getLogger(__name__)
Lister = Callable[[Path], list[dict[str, Any]]]
WARMUP_TEXT = "A man is riding a bike."


class StartupError(RuntimeError):
    """The service cannot start with these settings and artifacts; the message says what to change."""


class UnknownVariant(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown variant {name!r}; known variants: {', '.join(known)}")
        self.name, self.known = name, known


class VariantUnavailable(RuntimeError):
    """The variant exists but cannot serve now (broken, or it does not fit the memory budget)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Variant:
    name: str
    manifest: dict[str, Any]
    state: str = "available"  # available -> loading -> loaded | broken; loaded -> available when unloaded
    error: str | None = None
    translator: Any = None
    attention: OnnxAttention | None = None  # attention.onnx, opened on the first /attention request
    batcher: DynamicBatcher | None = None
    provider: str | None = None
    last_used: float = 0.0
    in_use: int = 0  # requests holding it: never unloaded while > 0
    failed_at: float = 0.0
    resident: int | None = None  # measured resident bytes of the loaded variant (attention session included)
    weight_bytes: int | None = None  # bytes of weights its translator holds (in-memory form: its arrays)
    expected: int = 0  # what it is expected to hold while it loads (its last measurement, else an estimate)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cost(self) -> int:
        """Bytes on disk (the manifest's)."""
        return int(number(self.manifest.get("bytes")) or 0)

    @property
    def held(self) -> int:
        """Resident bytes this variant holds now under the memory budget."""
        if self.state == "loading":
            return self.expected
        return (self.resident or 0) if self.state == "loaded" else 0

    @property
    def max_positions(self) -> int | None:
        """The longest output the variant's position table allows (None when its translator does not say)."""
        spec = getattr(self.translator, "spec", None)
        return getattr(spec, "max_positions", None)

    async def submit(self, texts: list[str], cfg: SearchConfig, timeout_s: float) -> BatchResult:
        if self.batcher is None:
            raise VariantUnavailable(f"variant {self.name!r} is not loaded; retry", retry_after=1)
        cap = self.max_positions
        if cap is not None and cfg.max_len > cap:  # a longer output would index past the position table
            cfg = dataclasses.replace(cfg, max_len=cap)
        return await self.batcher.submit(texts, cfg, timeout_s)

    @property
    def model_bytes(self) -> int:
        return int(number(self.manifest.get("model_bytes")) or self.cost)


class VariantRegistry:
    def __init__(self, settings: Settings, metrics: Metrics, loader: Loader | None = None, lister: Lister | None = None):
        if loader is None or lister is None:
            from compression.runtime import catalogue
            from compression.runtime.translator import open_translator

            loader, lister = loader or open_translator, lister or catalogue.list_exported
        self.settings, self.metrics = settings, metrics
        self._loader, self._lister = loader, lister
        self._variants: dict[str, Variant] = {}
        self._budget_lock = asyncio.Lock()
        self._load_lock = asyncio.Lock()  # one load at a time: its RSS growth is its own
        self._executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="tzip-infer")
        self.scheduler = FairScheduler(settings.inference_threads)
        self.memory = MemoryBook(settings.memory_budget_bytes, int(settings.inference_reserve_mb * 2**20),
                                 settings.inference_threads)
        self._verify: Callable[[Path], Any] = manifest_lib.verify
        self.sessions = SessionFactory(threads=settings.session_threads, spin=settings.ort_spin)
        self.default = ""
        self.ready = False
        self.not_ready_reason = "starting: loading the default variant"

    # -- start-up ----------------------------------------------------------------------------------

    def discover(self) -> None:
        """Find the variants and check the settings against them; raise StartupError with the fix."""
        s = self.settings
        root = s.model_root
        if not root.is_dir():
            raise StartupError(
                f"TZIP_MODEL_ROOT={root} is not a directory: run `make export` to export the shipped variants, "
                "or point TZIP_MODEL_ROOT at a directory of exported variants"
            )
        manifests = self._lister(root)
        if not manifests:
            raise StartupError(f"no exported variant under TZIP_MODEL_ROOT={root}: run `make export` first")
        names = [str(m["name"]) for m in manifests]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise StartupError(f"variant name(s) {dup} appear in several manifests under {root}; re-export one of them")
        self._variants = {str(m["name"]): Variant(str(m["name"]), m) for m in manifests}
        for name, error in unreadable_manifests(root, manifests).items():
            if name not in self._variants:
                self._variants[name] = Variant(name, {"path": str(root / name)}, state="broken", error=error,
                                               failed_at=float("inf"))  # a manifest is only read at start-up
        self.default = s.default_variant or pick_default(manifests)
        wanted = [self.default] + ([] if s.preload_all else s.preload)
        missing = [n for n in wanted if n not in self._variants]
        if missing:
            var = "TZIP_DEFAULT_VARIANT" if missing[0] == self.default else "TZIP_PRELOAD"
            raise StartupError(f"{var} names unknown variant(s) {missing}; exported variants: {', '.join(self.names)}")
        if self._variants[self.default].state == "broken":
            raise StartupError(f"the default variant {self.default!r} is broken: {self._variants[self.default].error}")
        need = self.memory.base + self.memory.reserve + self._variants[self.default].cost
        if need > self.memory.budget:
            raise StartupError(
                f"the process ({self.memory.base / 2**20:.0f} MB), the inference reserve "
                f"({self.memory.reserve / 2**20:.0f} MB) and the default variant {self.default!r} "
                f"({self._variants[self.default].cost / 2**20:.1f} MB on disk) need more than "
                f"TZIP_MEMORY_BUDGET_MB={s.memory_budget_mb:g}; raise the budget"
            )
        self.metrics.budget.set(self.memory.budget)
        device = resolve_device(s.device)
        groups = s.session_threads if device == "cpu" and s.ort_row_groups else 1  # CUDA: one call per batch
        self.sessions = SessionFactory(device, s.session_threads // groups, s.ort_spin, cpu_arena=s.ort_cpu_arena,
                                       workers=groups, cuda_graph=s.cuda_graph, stored_loop=s.stored_loop)
        log.info("variants under %s: %s (default %s, device %s)", root, ", ".join(self.names), self.default, self.device)

    @property
    def device(self) -> str:
        return self.sessions.device

    @property
    def names(self) -> list[str]:
        return sorted(self._variants)

    def preload_names(self) -> list[str]:
        rest = self.names if self.settings.preload_all else self.settings.preload
        return [self.default] + [n for n in rest if n != self.default and self._variants[n].state != "broken"]

    async def preload(self) -> None:
        """Load and warm up the default variant (then the service is ready) and the preload list."""
        for name in self.preload_names():
            try:
                await self._ensure(self._variants[name])
            except VariantUnavailable as e:
                log.error("preloading %s failed: %s", name, e)
                if name == self.default:
                    self.not_ready_reason = f"default variant {name!r} failed to load: {e}"
                continue
            if name == self.default:
                self.ready = True
                self.not_ready_reason = ""
        await self.verify_all()

    async def verify_all(self) -> None:
        """Check every file of the variants not loaded yet against its manifest, so a broken one is listed
        (and logged) before its first request."""
        for v in list(self._variants.values()):
            if v.state != "available":
                continue
            try:
                await asyncio.to_thread(self._verify, Path(v.manifest["path"]))
            except Exception as e:
                if v.state == "available":  # a first request may be loading it meanwhile: that load marks it once
                    self._mark_broken(v, e)

    def _mark_broken(self, v: Variant, e: Exception) -> None:
        v.state, v.failed_at, v.error = "broken", time.monotonic(), public_error(e)
        self.metrics.load_failures.labels(v.name).inc()
        log.error("variant %s is broken: %s (%s)", v.name, v.error, e)

    async def watch_memory(self, every_s: float = 5.0) -> None:
        """Keep the gauges current and unload idle variants when the inference reserve has grown past the budget."""
        while True:
            await asyncio.sleep(every_s)
            self.metrics.process_resident.set(rss_bytes() or 0)
            self.metrics.reserve.set(self.memory.reserve)
            async with self._budget_lock:
                with contextlib.suppress(VariantUnavailable):
                    await self._reserve(None, 0)

    async def close(self) -> None:
        for v in self._variants.values():
            if v.batcher is not None:
                await v.batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- serving -----------------------------------------------------------------------------------

    def resolve(self, name: str | None) -> Variant:
        name = self.default if name is None else name
        v = self._variants.get(name)
        if v is None:
            raise UnknownVariant(name, self.names)
        return v

    @contextlib.asynccontextmanager
    async def use(self, v: Variant) -> AsyncIterator[Variant]:
        """Hold a loaded variant for one request (it cannot be unloaded meanwhile)."""
        v.in_use += 1
        try:
            await self._ensure(v)
            v.last_used = time.monotonic()
            yield v
        finally:
            v.in_use -= 1

    def variants(self) -> list[Variant]:
        return [self._variants[n] for n in self.names]

    def describe(self) -> list[dict[str, Any]]:
        return [self.describe_one(self._variants[n]) for n in self.names]

    def describe_one(self, v: Variant) -> dict[str, Any]:
        return describe(v, v.name == self.default)

    # -- loading and unloading ----------------------------------------------------------------------

    async def _ensure(self, v: Variant) -> None:
        if v.state == "loaded":
            return
        async with v.lock:  # concurrent first requests: one loads, the others wait here and find it loaded
            if v.state == "loaded":
                return
            if v.state == "broken" and time.monotonic() - v.failed_at < self.settings.retry_failed_load_s:
                raise VariantUnavailable(f"variant {v.name!r} is broken: {v.error}")
            async with self._load_lock:
                await self._load(v)

    async def _load(self, v: Variant) -> None:
        async with self._budget_lock:  # reserve what it is expected to hold, unloading idle variants for it
            v.expected = v.resident or max(v.cost, self._largest_resident())
            await self._reserve(v, v.expected)
            v.state = "loading"
        start = time.perf_counter()
        before = await asyncio.to_thread(self.memory.measure)
        try:
            translator = await asyncio.to_thread(gpu_shared(self._loader), Path(v.manifest["path"]), self.sessions)
            await asyncio.to_thread(gpu_shared(translator.translate), [WARMUP_TEXT], SearchConfig(), 1)
        except Exception as e:
            self._mark_broken(v, e)
            raise VariantUnavailable(f"variant {v.name!r} is broken: {v.error}") from e
        after = await asyncio.to_thread(self.memory.measure)
        v.resident = max(v.cost, after - before) if before is not None and after is not None else v.cost
        s = self.settings
        v.translator, v.provider, v.error = translator, str(getattr(translator, "provider", "unknown")), None
        v.weight_bytes = artifacts.resident_weights(translator, v.model_bytes)
        v.batcher = DynamicBatcher(
            v.name, self._measured(gpu_shared(translator.translate)), self._executor, self.metrics,
            s.max_batch_size, s.max_wait_ms / 1000, s.max_queue, self.scheduler, s.max_batch_rows,
        )
        v.batcher.start()
        v.state = "loaded"
        self.metrics.loaded.labels(v.name).set(1)
        self.metrics.load_seconds.labels(v.name).set(time.perf_counter() - start)
        self._gauge_bytes()
        log.info("loaded %s on %s in %.2f s: %.1f MB resident", v.name, v.provider, time.perf_counter() - start,
                 v.resident / 2**20)
        async with self._budget_lock:  # measured more than expected: make room now, never the one just loaded
            with contextlib.suppress(VariantUnavailable):
                await self._reserve(v, 0)

    def _measured(self, translate: Callable[..., list[str]]) -> Callable[..., list[str]]:
        """The translate call, with the RSS growth it causes learnt by the memory book (and the heap trimmed)."""
        def run(texts: list[str], cfg: SearchConfig, batch_size: int) -> list[str]:
            before = rss_bytes()
            try:
                return translate(texts, cfg, batch_size)
            finally:
                self.memory.observe_call(before)
        return run

    def _largest_resident(self) -> int:
        return max((x.resident or 0 for x in self._variants.values()), default=0)

    def used(self) -> int:
        """Resident bytes the budget counts now: the process at start, the variants, the inference reserve."""
        return self.memory.base + self.memory.reserve + sum(x.held for x in self._variants.values())

    async def _reserve(self, v: Variant | None, extra: int) -> None:
        """Unload idle variants, least recently used first, until ``extra`` more bytes for ``v`` fit (call
        with the budget lock held)."""
        budget = self.memory.budget
        while self.used() + extra > budget:
            idle = [
                x for x in self._variants.values()
                if x.state == "loaded" and x.name != self.default and x is not v and x.in_use == 0
                and x.batcher is not None and x.batcher.idle
            ]
            if not idle:
                what = f"variant {v.name!r} ({extra / 2**20:.1f} MB more)" if v is not None else "the inference reserve"
                raise VariantUnavailable(
                    f"{what} does not fit TZIP_MEMORY_BUDGET_MB={self.settings.memory_budget_mb:g} "
                    f"({self.used() / 2**20:.0f} MB resident in use) next to the variants in use; retry later or "
                    "raise the budget",
                    retry_after=5,
                )
            await self._unload(min(idle, key=lambda x: x.last_used))

    async def attention(self, v: Variant) -> OnnxAttention:
        """The attention session of a loaded variant (hold it with ``use``), opened once on the registry's
        device and counted in the memory budget; unloaded with the variant. NoAttentionGraph when the
        export has none."""
        if v.attention is not None:
            return v.attention
        async with v.lock:
            if (att := v.attention) is None:
                expected = v.model_bytes * 2  # its weights once more, and its session
                async with self._load_lock:
                    async with self._budget_lock:
                        await self._reserve(v, expected)
                    before = await asyncio.to_thread(self.memory.measure)
                    att = await asyncio.to_thread(gpu_shared(OnnxAttention), Path(v.manifest["path"]), self.sessions.intra())
                    v.attention, after = att, await asyncio.to_thread(self.memory.measure)
                grew = after - before if before is not None and after is not None else expected
                v.resident = (v.resident or 0) + max(v.model_bytes, grew)
                self._gauge_bytes()
            return att

    async def unload(self, name: str) -> None:
        """Unload a variant now if it is loaded and idle (a host with its own LRU, Ray Serve's, asks)."""
        v = self.resolve(name)
        if v.state == "loaded" and v.in_use == 0 and v.batcher is not None and v.batcher.idle:
            async with self._budget_lock:
                await self._unload(v)

    async def _unload(self, v: Variant) -> None:
        log.info("unloading %s (least recently used) to stay within the memory budget", v.name)
        v.state = "available"
        if v.batcher is not None:
            await v.batcher.stop()
        v.translator, v.attention, v.batcher, v.provider, v.weight_bytes = None, None, None, None, None
        await asyncio.to_thread(trim)  # hand the freed sessions' memory back to the system
        self.metrics.loaded.labels(v.name).set(0)
        self._gauge_bytes()

    def _gauge_bytes(self) -> None:
        loaded = [x for x in self._variants.values() if x.state == "loaded"]
        self.metrics.loaded_bytes.set(sum(x.cost for x in loaded))
        for x in self._variants.values():
            self.metrics.resident.labels(x.name).set(x.held if x.state == "loaded" else 0)
            self.metrics.disk.labels(x.name).set(x.cost)
            self.metrics.weight_bytes.labels(x.name).set((x.weight_bytes or 0) if x.state == "loaded" else 0)
        self.metrics.process_resident.set(rss_bytes() or 0)
        self.metrics.reserve.set(self.memory.reserve)
