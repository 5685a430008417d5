"""Variant lifecycle: discovery by manifest, preloading, lazy loading, a memory budget with LRU unloading.

Variants are found once at start-up by their manifests (``compression.runtime.catalogue.list_exported``) and
are known by the ``name`` recorded there; a client's ``?variant=`` is only ever compared with those
names, so it never reaches a file path. Loading hands the directory found at start-up to the loader
(``compression.runtime.translator.OnnxTranslator``), which checks every file's sha256 before it creates a session: a tampered variant is refused (and
retried after ``retry_failed_load_s``) while the others keep serving. Concurrent first requests for a
variant wait on one lock and load it once. A variant's memory cost is its bytes on disk; when a load
would exceed the budget, idle variants unload least recently used first (the default one stays).
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
from typing import Any, Protocol

from compression.runtime.attention import OnnxAttention
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory

from .batcher import BatchResult, DynamicBatcher
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)



class Translator(Protocol):
    """What the registry serves: ``OnnxTranslator`` (tests wrap it)."""

    provider: str

    def translate(self, texts: list[str], cfg: SearchConfig | None = None, batch_size: int = 64) -> list[str]: ...


class Loader(Protocol):
    """Opens the variant in ``directory`` (found by its manifest at start-up) with the service's sessions."""

    def __call__(self, directory: Path, sessions: SessionFactory) -> Translator: ...


Lister = Callable[[Path], list[dict[str, Any]]]
WARMUP_TEXT = "A man is riding a bike."


class StartupError(RuntimeError):
    """The service cannot start with these settings and artifacts; the message says what to change."""


class UnknownVariant(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown variant {name!r}; known variants: {', '.join(known)}")
        self.name, self.known = name, known


class VariantUnavailable(RuntimeError):
    """The variant exists but cannot serve now (refused at load, or it does not fit the memory budget)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Variant:
    name: str
    manifest: dict[str, Any]
    state: str = "available"  # available -> loading -> loaded | refused; loaded -> available when unloaded
    error: str | None = None
    translator: Any = None
    attention: OnnxAttention | None = None  # attention.onnx, opened on the first /attention request
    batcher: DynamicBatcher | None = None
    provider: str | None = None
    last_used: float = 0.0
    in_use: int = 0  # requests holding it: never unloaded while > 0
    failed_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cost(self) -> int:
        return int(_number(self.manifest.get("bytes")) or 0)

    @property
    def attention_cost(self) -> int:
        """The attention session holds the variant's weights once more."""
        return self.model_bytes

    @property
    def held(self) -> int:
        """Bytes this variant holds now under the memory budget."""
        if self.state not in ("loaded", "loading"):
            return 0
        return self.cost + (self.attention_cost if self.attention is not None else 0)

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
        return int(_number(self.manifest.get("model_bytes")) or self.cost)


def resolve_device(device: str) -> str:
    """auto -> cuda when this onnxruntime has the CUDA provider. For cuda, load the CUDA/cuDNN libraries of
    installed nvidia-* wheels first (onnxruntime.preload_dlls), since the service never imports torch,
    which would otherwise put them on the path. The provider that really runs is reported per variant."""
    import onnxruntime

    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    if device == "cuda" and hasattr(onnxruntime, "preload_dlls"):
        try:
            onnxruntime.preload_dlls()
        except Exception as e:  # the libraries may be on LD_LIBRARY_PATH already
            log.warning("onnxruntime.preload_dlls() failed (%s); relying on the system's CUDA libraries", e)
    return device


def pick_default(manifests: list[dict[str, Any]]) -> str:
    """The uncompressed variant (by metadata), else the largest one: the reference the others compress."""
    plain = [m for m in manifests if str(m.get("method", "")).lower() in ("none", "fp32", "")]
    pool = plain or manifests
    pool = sorted(pool, key=lambda m: str(m["name"]))  # ties: the first name wins
    return max(pool, key=lambda m: int(m.get("bytes") or 0))["name"]


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
        self._executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="tzip-infer")
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
        self.default = s.default_variant or pick_default(manifests)
        wanted = [self.default] + ([] if s.preload_all else s.preload)
        missing = [n for n in wanted if n not in self._variants]
        if missing:
            var = "TZIP_DEFAULT_VARIANT" if missing[0] == self.default else "TZIP_PRELOAD"
            raise StartupError(f"{var} names unknown variant(s) {missing}; exported variants: {', '.join(self.names)}")
        budget = s.memory_budget_mb * 2**20
        if self._variants[self.default].cost > budget:
            raise StartupError(
                f"the default variant {self.default!r} needs {self._variants[self.default].cost / 2**20:.1f} MB, "
                f"above TZIP_MEMORY_BUDGET_MB={s.memory_budget_mb:g}; raise the budget"
            )
        self.sessions = SessionFactory(resolve_device(s.device), s.session_threads, s.ort_spin)
        log.info("variants under %s: %s (default %s, device %s)", root, ", ".join(self.names), self.default, self.device)

    @property
    def device(self) -> str:
        return self.sessions.device

    @property
    def names(self) -> list[str]:
        return sorted(self._variants)

    def preload_names(self) -> list[str]:
        rest = self.names if self.settings.preload_all else self.settings.preload
        return [self.default] + [n for n in rest if n != self.default]

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

    def describe(self) -> list[dict[str, Any]]:
        return [self.describe_one(self._variants[n]) for n in self.names]

    def describe_one(self, v: Variant) -> dict[str, Any]:
        m = v.manifest
        return {
            "name": v.name,
            "method": None if m.get("method") is None else str(m["method"]),
            "bits": _number(m.get("bits")),
            "sparsity": _number(m.get("sparsity")),
            "bytes": v.cost,
            "model_bytes": v.model_bytes,
            "ratio": _number(m.get("ratio")),
            "bleu": bleu_of(m),
            "default": v.name == self.default,
            "loaded": v.state == "loaded",
            "state": v.state,
            "provider": v.provider,
            "error": v.error,
        }

    # -- loading and unloading ----------------------------------------------------------------------

    async def _ensure(self, v: Variant) -> None:
        if v.state == "loaded":
            return
        async with v.lock:  # concurrent first requests: one loads, the others wait here and find it loaded
            if v.state == "loaded":
                return
            if v.state == "refused" and time.monotonic() - v.failed_at < self.settings.retry_failed_load_s:
                raise VariantUnavailable(f"variant {v.name!r} was refused at load: {v.error}")
            await self._make_room(v)
            start = time.perf_counter()
            try:
                translator = await asyncio.to_thread(self._loader, Path(v.manifest["path"]), self.sessions)
                await asyncio.to_thread(translator.translate, [WARMUP_TEXT], SearchConfig(), 1)
            except Exception as e:
                v.state, v.failed_at = "refused", time.monotonic()
                v.error = _public_error(e)
                self.metrics.load_failures.labels(v.name).inc()
                log.error("refused variant %s: %s", v.name, e)
                raise VariantUnavailable(f"variant {v.name!r} was refused at load: {v.error}") from e
            s = self.settings
            v.translator, v.provider, v.error = translator, str(getattr(translator, "provider", "unknown")), None
            v.batcher = DynamicBatcher(
                v.name, translator.translate, self._executor, self.metrics,
                s.max_batch_size, s.max_wait_ms / 1000, s.max_queue,
            )
            v.batcher.start()
            v.state = "loaded"
            self.metrics.loaded.labels(v.name).set(1)
            self.metrics.load_seconds.labels(v.name).set(time.perf_counter() - start)
            self._gauge_bytes()
            log.info("loaded %s on %s in %.2f s", v.name, v.provider, time.perf_counter() - start)

    async def _make_room(self, v: Variant) -> None:
        """Reserve v's bytes under the budget, unloading idle variants least recently used first."""
        budget = int(self.settings.memory_budget_mb * 2**20)
        async with self._budget_lock:
            await self._reserve(v, v.cost, budget)
            v.state = "loading"

    async def _reserve(self, v: Variant, extra: int, budget: int) -> None:
        """Unload idle variants, least recently used first, until ``extra`` more bytes for ``v`` fit (call
        with the budget lock held)."""
        def used() -> int:
            return sum(x.held for x in self._variants.values())

        while used() + extra > budget:
            idle = [
                x for x in self._variants.values()
                if x.state == "loaded" and x.name not in (self.default, v.name) and x.in_use == 0
                and x.batcher is not None and x.batcher.idle
            ]
            if not idle:
                raise VariantUnavailable(
                    f"variant {v.name!r} ({extra / 2**20:.1f} MB more) does not fit TZIP_MEMORY_BUDGET_MB="
                    f"{self.settings.memory_budget_mb:g} next to the variants in use; retry later or raise the budget",
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
            if v.attention is None:
                async with self._budget_lock:
                    await self._reserve(v, v.attention_cost, int(self.settings.memory_budget_mb * 2**20))
                v.attention = await asyncio.to_thread(OnnxAttention, Path(v.manifest["path"]), self.sessions)
                self._gauge_bytes()
            return v.attention

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
        v.translator, v.attention, v.batcher, v.provider = None, None, None, None
        self.metrics.loaded.labels(v.name).set(0)
        self._gauge_bytes()

    def _gauge_bytes(self) -> None:
        self.metrics.loaded_bytes.set(sum(x.held for x in self._variants.values() if x.state == "loaded"))


def _number(x: Any) -> float | None:
    """A manifest figure as a number, or None when it is missing or not numeric (never a 500 on /variants)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return x


def bleu_of(manifest: dict[str, Any]) -> float | None:
    """The manifest's test BLEU as one number (from a dict of scores: its greedy or beam score): the one
    measured through ONNX Runtime on this very export when it was evaluated, else the one recorded with the
    variant it was exported from (equal within 0.08 BLEU for every shipped variant: parity_variants.md)."""
    b = manifest.get("bleu_onnx")
    if b is None:
        b = manifest.get("bleu")
    if isinstance(b, dict):
        for key in ("bleu", "beam5", "greedy", "test_2016_flickr"):
            if key in b:
                return bleu_of({"bleu": b[key]})
        return None
    return _number(b)


def _public_error(e: Exception) -> str:
    """What a client may see: the kind of failure and the fix, without the server's file paths."""
    from compression.runtime.manifest import IntegrityError

    if isinstance(e, IntegrityError):
        return "integrity check failed (a file differs from its manifest's sha256); re-export the variant"
    if isinstance(e, FileNotFoundError):
        return "an artifact file is missing; re-export the variant"
    return f"{type(e).__name__} while loading (see the server log)"
