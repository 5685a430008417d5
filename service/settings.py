"""Service settings, read from ``TZIP_*`` environment variables and validated once at start-up.

Every field has a default, so ``make serve`` on a fresh clone needs no configuration. A bad value
stops the service before it binds its port, with a message that names the variable to fix.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TZIP_"
log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # network
    host: str = Field("127.0.0.1", description="interface uvicorn binds (0.0.0.0 in the Docker image)")
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # variants
    model_root: Path = Field(
        default_factory=lambda: Path(os.environ.get("TZIP_ONNX_ROOT", "build/onnx")),
        description="directory of exported variants (`make export`); default $TZIP_ONNX_ROOT, else build/onnx",
    )
    default_variant: str | None = Field(None, description="served when ?variant= is absent; default: the uncompressed one")
    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated names loaded at start-up, or 'all' (the default is always preloaded)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when onnxruntime-gpu sees a GPU")
    memory_budget_mb: float = Field(
        2048, gt=0, description="resident memory of the process (measured: start-up, each loaded variant, the "
        "inference reserve); a load above it unloads idle variants least recently used first"
    )
    inference_reserve_mb: float = Field(
        256, ge=0, description="resident memory kept free for each inference call running at once (at least; "
        "the largest growth measured during one call once it is larger)"
    )
    retry_failed_load_s: float = Field(30, ge=0, description="a variant refused at load is retried after this")

    # dynamic batching and load shedding
    max_batch_size: int = Field(64, ge=1, le=1024, description="sentences per inference call")
    max_batch_rows: int = Field(
        32, ge=1, le=4096, description="decoder rows (sentences x beam) per inference call: bounds its memory, "
        "and how long other requests wait behind it"
    )
    max_wait_ms: float = Field(10, ge=0, le=10_000, description="how long a batch waits to fill up")
    max_queue: int = Field(1024, ge=1, description="sentences waiting per variant before 503 + Retry-After")
    request_timeout_s: float = Field(30, gt=0, description="a request still unanswered after this gets 503")
    inference_threads: int = Field(1, ge=1, le=64, description="inference calls running at once (all variants)")
    ort_threads: int = Field(
        0, ge=0, le=256, description="ONNX Runtime intra-op threads per session; 0: the cores, split over the inference threads"
    )
    ort_row_groups: bool = Field(
        True, description="on the CPU, split each greedy batch into one group of rows per ONNX Runtime thread, "
        "decoded by single-threaded session calls at once, instead of one call with that many intra-op threads "
        "(benchmarks/speed/README.md); beam search and stored variants keep intra-op threads"
    )
    cuda_graph: bool = Field(
        True, description="under CUDA, greedy decoding of graph-file exports replays one CUDA graph per token "
        "(compression/runtime/static_greedy.py); off, the ONNX Loop graph"
    )
    stored_loop: bool = Field(
        False, description="greedy decoding of variants served from their stored form runs as one ONNX Loop per "
        "batch (same tokens; on the 2-core CPU ~1.1x batch-32 throughput and ~0.8x batch-1 latency, for ~3.3 MiB "
        "more per variant); off, one session run per token"
    )
    ort_cpu_arena: bool = Field(
        False, description="ONNX Runtime's CPU memory arena; off, a large request's memory is given back "
        "afterwards (benchmarks/soak/arena.json)"
    )
    ort_spin: bool = Field(
        False,
        description="let idle ONNX Runtime threads spin; off, they yield the cores to the event loop and local "
        "clients between steps (on 2 cores with locust: 1.4x the throughput of spinning on one thread, "
        "3.7x spinning on two)",
    )

    # input limits
    max_texts: int = Field(64, ge=1, le=4096)
    max_text_chars: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_request_tokens: int = Field(
        32768, ge=1, description="decoder steps one request may ask for: the sum over its segments of beam x "
        "the segment's output limit (min(max_len, 1.5 x source tokens + 10)); above it, 413"
    )
    max_segment_chars: int = Field(
        300, ge=20, description="longer sentences are cut at a clause or word boundary before translation"
    )

    @field_validator("preload", mode="before")
    @classmethod
    def _split_names(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_queue < self.max_texts:
            raise ValueError(
                f"TZIP_MAX_QUEUE={self.max_queue} is below TZIP_MAX_TEXTS={self.max_texts}: a full-size request "
                "could never be queued; raise TZIP_MAX_QUEUE or lower TZIP_MAX_TEXTS"
            )
        if self.max_body_bytes < self.max_text_chars:
            raise ValueError("TZIP_MAX_BODY_BYTES must be at least TZIP_MAX_TEXT_CHARS")
        return self

    @property
    def session_threads(self) -> int:
        if self.ort_threads:
            return self.ort_threads
        return max(1, (os.cpu_count() or 1) // self.inference_threads)

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 2**20)

    @property
    def preload_all(self) -> bool:
        return [n.lower() for n in self.preload] == ["all"]


class SettingsError(ValueError):
    """The environment holds an invalid TZIP_* value; the message lists every one and how to fix it."""


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (overrides win) and turn a ValidationError into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            var = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            got = f" (got {err['input']!r})" if field and not isinstance(err.get("input"), dict) else ""
            lines.append(f"  {var}: {err['msg']}{got}")
        raise SettingsError("invalid service settings:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


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
