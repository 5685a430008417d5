"""ONNX Runtime sessions: one factory, configured explicitly (no environment variables between modules).

``SessionFactory`` holds what every session of a process should share: the device, the intra-op thread
count and whether idle worker threads spin. The service builds one from its settings; the CLI and the
benchmarks from their flags. ``session`` reports the execution provider that REALLY runs: ONNX Runtime
falls back to the CPU silently when CUDA cannot start. No torch here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnxruntime as ort
from onnx import TensorProto, helper

from compression.runtime import onnx_format as fmt

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
DEVICES = tuple(PROVIDERS)


@dataclass(frozen=True)
class SessionFactory:
    """device: cpu | cuda. threads: intra-op threads per session (0 = ONNX Runtime's default, one per physical
    core). spin: idle worker threads spin (off when several sessions or processes share the cores: spinning
    then costs far more than it saves). device_argmax: greedy search takes the argmax where the log-probs are
    (under CUDA: N ids cross to the host instead of N x V scores). greedy_loop: graph-file exports decode
    greedy in one ONNX Loop per batch (compression.runtime.greedy) instead of one run per token. cpu_arena:
    ONNX Runtime's CPU memory arena (off, tensors are malloc'ed and freed per run, so a large request's memory
    can be given back). workers: the Loop translator splits a greedy batch into this many row groups, each
    decoded by its own session call at the same time from a thread pool (ONNX Runtime releases the GIL); on
    the CPU ``threads=1, workers=N`` keeps N cores busy without the per-node synchronisation of N intra-op
    threads, which the small kernels of a decoder step (256 wide) do not amortise (benchmarks/speed).
    stored_loop: variants served from their stored form (``memory``) decode greedy in one ONNX Loop run per batch
    too (same tokens; the Loop session costs ~3.3 MiB more, so off by default: issue 12's memory figures)."""

    device: str = "cpu"
    threads: int = 0
    spin: bool = True
    device_argmax: bool = True
    greedy_loop: bool = True
    cpu_arena: bool = True
    workers: int = 1
    cuda_graph: bool = True
    stored_loop: bool = False

    def __post_init__(self) -> None:
        if self.device not in PROVIDERS:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = ONNX Runtime's default), got {self.threads}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (1 = one session call per batch), got {self.workers}")

    def intra(self) -> SessionFactory:
        """This factory for translators without row groups (step-wise decoding, beam search, stored variants):
        the same cores, as intra-op threads of one call."""
        return self if self.workers == 1 else replace(self, threads=self.threads * self.workers, workers=1)

    def options(self) -> ort.SessionOptions:
        """Full graph optimization (folds constant sub-graphs once at load)."""
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            so.intra_op_num_threads = self.threads
        if not self.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.enable_cpu_mem_arena = self.cpu_arena
        so.log_severity_level = 3  # warnings about unused initializers after folding are noise
        return so

    def providers(self) -> list[str]:
        if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return PROVIDERS["cpu"]
        return PROVIDERS[self.device]

    def session(self, model: Path | str | bytes, providers: list[str | tuple[str, dict[str, str]]] | None = None,
                options: ort.SessionOptions | None = None) -> tuple[ort.InferenceSession, str]:
        """A session over a graph file (or serialized graph) and the provider that really runs it;
        ``options`` (default ``self.options()``) when the caller adds entries (e.g. shared weights)."""
        source = model if isinstance(model, bytes) else str(model)
        s = ort.InferenceSession(source, sess_options=options or self.options(), providers=providers or self.providers())
        return s, s.get_providers()[0]


class GpuWork:
    """Who may use the GPU now, process-wide. ONNX Runtime captures a CUDA graph in CUDA's global capture mode:
    any other CUDA call of the process meanwhile (another session's kernels, an allocation, a copy) fails, and
    fails the capture. A capturing run takes this exclusively; all other GPU work (loading a variant, running
    one) shares it. Writers first: a waiting capture stops new shared holders. Not re-entrant: never nest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._shared:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


GPU_WORK = GpuWork()


def gpu_shared(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run under ``GPU_WORK.shared()``, unless it is a method of a translator that takes ``GPU_WORK``
    itself (``takes_gpu_work``: the CUDA-graph translator, whose captures need it exclusively)."""
    if getattr(getattr(fn, "__self__", None), "takes_gpu_work", False):
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with GPU_WORK.shared():
            return fn(*args, **kwargs)

    return run


def cuda_fallback_reason() -> str:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return "ONNX Runtime could not start CUDA (libraries or GPU missing; `import torch` first, or onnxruntime.preload_dlls())"


def _tiny_model(nodes, inputs, outputs) -> bytes:
    graph = helper.make_graph(nodes, "helper", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", fmt.OPSET)])
    model.ir_version = 9
    return model.SerializeToString()


def row_selector(value_types: list[str]) -> bytes:
    """A tiny graph that gathers rows (axis 0) of each of several tensors: shrinks the cross keys/values
    and source mask to the rows still decoding, on whatever device they live (no host round trip)."""
    elem = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16, "tensor(bool)": TensorProto.BOOL}
    inputs = [helper.make_tensor_value_info("rows", TensorProto.INT64, ["n"])]
    outputs, nodes = [], []
    for i, t in enumerate(value_types):
        inputs.append(helper.make_tensor_value_info(f"x{i}", elem[t], None))
        outputs.append(helper.make_tensor_value_info(f"y{i}", elem[t], None))
        nodes.append(helper.make_node("Gather", [f"x{i}", "rows"], [f"y{i}"], axis=0))
    return _tiny_model(nodes, inputs, outputs)


def argmax_graph() -> bytes:
    """A tiny graph: the index of each row's largest score (the first one on ties, as NumPy's argmax)."""
    return _tiny_model([helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0)],
                       [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", "v"])],
                       [helper.make_tensor_value_info("best", TensorProto.INT64, ["n"])])
