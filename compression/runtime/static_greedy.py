"""Greedy decoding by static-shape steps bound once: IOBinding end to end and, under CUDA, CUDA graphs.

``StaticGreedyTranslator`` is a drop-in for ``GreedyLoopTranslator`` (same export directory, ``translate`` /
``translate_ids``, greedy by ``compression.runtime.search.greedy``'s rules with each sentence's own limit).
A batch is padded to a bucket: B rows (1, 2, 4, ..., 256), S source positions and T steps (16, 32, ..., 512).
Each bucket owns its device buffers, allocated once: the encoder's outputs, and two sets of the step's
carried values (``graphs_static.carried``: last tokens, position, finished flags, token history, KV cache).
Step t runs the static step graph reading set t % 2 and writing the other, so each of the bucket's two
IOBindings always names the same addresses, which is what a CUDA graph needs: ONNX Runtime captures one
graph per (bucket, parity) (``gpu_graph_id``) on first use and then replays it with a single launch per
token. Per batch the host sends the padded source ids and limits, per step it reads B finished flags
(to stop), and at the end the (B, T) token history. Padding rows start finished (limit 1, source = EOS).

Without CUDA (or when ONNX Runtime refuses graph capture for this graph, ``cuda_graph_note`` says why) the
same bindings run as ordinary session runs. Beam search runs the ``graphs_beam`` Loop (no CUDA graphs).
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from compression.runtime import onnx_format as fmt
from compression.runtime.graphs_static import build_static_step, carried
from compression.runtime.greedy import ExportGreedy, strip_eos
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import GPU_WORK, SessionFactory

log = logging.getLogger(__name__)

ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTHS = (16, 32, 64, 128, 256, 512)


def ladder(n: int, rungs: tuple[int, ...]) -> int:
    """The smallest rung >= n (n must not exceed the last)."""
    for r in rungs:
        if r >= n:
            return r
    raise ValueError(f"{n} exceeds the largest bucket {rungs[-1]}")


@dataclass
class Bucket:
    rows: int
    src_len: int
    steps: int
    encoded: dict[str, ort.OrtValue]  # the encoder's outputs (src_mask, cross_*), written in place each batch
    sets: tuple[dict[str, ort.OrtValue], dict[str, ort.OrtValue]]  # carried values, by input name
    shared: dict[str, ort.OrtValue]  # steps (T,), limits (B,)
    bindings: list[ort.IOBinding] = field(default_factory=list)
    run_options: list[ort.RunOptions] = field(default_factory=list)
    host: list[np.ndarray] = field(default_factory=list)  # CPU buffers the OrtValues wrap: kept alive
    # step runs of each parity (graph id) so far, per calling thread: ONNX Runtime keeps CUDA graphs (and counts
    # the runs before a capture) in the calling thread's context, so each serving thread captures its own
    runs: dict[int, list[int]] = field(default_factory=dict)

    def thread_runs(self) -> list[int]:
        return self.runs.setdefault(threading.get_ident(), [0, 0])


CAPTURE_RUNS = 3  # ONNX Runtime captures a graph id within a thread's first runs of it (after regular ones): those run alone


class StaticGreedyTranslator(ExportGreedy):
    backend = "onnx-static"
    takes_gpu_work = True  # sessions.GPU_WORK: exclusively while its graphs may be captured, shared otherwise

    def __init__(self, directory: Path | str, sessions: SessionFactory | None = None, cuda_graph: bool = True):
        sessions = (sessions or SessionFactory()).intra()
        super().__init__(directory, sessions)
        self._found_provider(self.provider)
        decoder = onnx.load(str(self.directory / fmt.DECODER_FILE), load_external_data=True)
        step = build_static_step(decoder, self.spec).SerializeToString()
        self.cuda_graph_note = "no CUDA" if self.device_type != "cuda" else ("off" if not cuda_graph else "")
        self.cuda_graphs = False
        if self.device_type == "cuda" and cuda_graph:
            try:
                self.step, _ = sessions.session(step, providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
                self.cuda_graphs = True
                self.cuda_graph_note = "CUDA graphs"
            except Exception as exc:  # ONNX Runtime refuses capture (a node on the CPU, control flow...)
                self.cuda_graph_note = f"CUDA graphs refused: {str(exc).splitlines()[0][:200]}"
                log.warning("%s: %s", self.directory.name, self.cuda_graph_note)
        if not self.cuda_graphs:
            self.step, _ = sessions.session(step)
        self.carried = carried(self.spec)
        self._buckets: dict[tuple[int, int, int], Bucket] = {}
        self._graph_ids = itertools.count()
        self._lock = threading.Lock()

    @property
    def provider_note(self) -> str:
        """Shown beside the provider by the benchmarks: whether CUDA graphs run, and if not why."""
        return self.cuda_graph_note

    @property
    def buckets(self) -> list[tuple[int, int, int]]:
        """(rows, source length, steps) of every bucket allocated so far (each holds two CUDA graphs)."""
        return sorted(self._buckets)

    # -- buffers ----------------------------------------------------------------------------------
    def _value(self, b: Bucket, array: np.ndarray) -> ort.OrtValue:
        if self.device_type == "cpu":
            b.host.append(array)  # the OrtValue wraps this array's memory
            return ort.OrtValue.ortvalue_from_numpy(array)
        return ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)

    def _bucket(self, rows: int, src_len: int, steps: int) -> Bucket:
        key = (rows, src_len, steps)
        if key in self._buckets:
            return self._buckets[key]
        spec, fdt = self.spec, np.dtype(self.spec.float_dtype)
        H, Dh = spec.n_heads, spec.head_dim
        b = Bucket(rows, src_len, steps, {}, ({}, {}), {})
        b.encoded["src_mask"] = self._value(b, np.zeros((rows, 1, 1, src_len), dtype=bool))
        for i in range(spec.decoder_layers):
            for n in fmt.cross_names(i):
                b.encoded[n] = self._value(b, np.zeros((rows, H, src_len, Dh), dtype=fdt))
        b.shared["steps"] = self._value(b, np.arange(steps, dtype=np.int64))
        b.shared["limits"] = self._value(b, np.ones(rows, dtype=np.int64))
        for s in b.sets:  # zeros: positions not yet written are masked, but must be finite (0 x weight)
            s["tokens"] = self._value(b, np.zeros(rows, dtype=np.int64))
            s["pos"] = self._value(b, np.zeros(1, dtype=np.int64))
            s["finished"] = self._value(b, np.ones(rows, dtype=bool))
            s["history"] = self._value(b, np.zeros((rows, steps), dtype=np.int64))
            for i in range(spec.decoder_layers):
                for n in fmt.past_names(i):
                    s[n] = self._value(b, np.zeros((rows, H, steps, Dh), dtype=fdt))
        for parity in (0, 1):
            src, dst = b.sets[parity], b.sets[1 - parity]
            io = self.step.io_binding()
            for name, value in itertools.chain(src.items(), b.shared.items(), b.encoded.items()):
                io.bind_ortvalue_input(name, value)
            for name, out in self.carried.items():
                io.bind_ortvalue_output(out, dst[name])
            ro = ort.RunOptions()
            if self.cuda_graphs:
                ro.add_run_config_entry("gpu_graph_id", str(next(self._graph_ids)))
            b.bindings.append(io)
            b.run_options.append(ro)
        self._buckets[key] = b
        return b

    # -- decoding ---------------------------------------------------------------------------------
    def greedy_ids(self, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        """``search.greedy`` over these sources with these per-sentence limits (batches above 256 rows in
        chunks of 256)."""
        out: list[list[int]] = []
        for i in range(0, len(src_ids), ROWS[-1]):
            chunk, lim = src_ids[i : i + ROWS[-1]], limits[i : i + ROWS[-1]]
            key = (ladder(len(chunk), ROWS), ladder(max(len(s) for s in chunk), LENGTHS), ladder(max(lim), LENGTHS))
            with self._lock:
                b = self._buckets.get(key)
                capturing = self.cuda_graphs and (b is None or min(b.thread_runs()) < CAPTURE_RUNS)
                with GPU_WORK.exclusive() if capturing else GPU_WORK.shared():  # allocating a bucket too
                    out += self._run(b or self._bucket(*key), chunk, lim)
        return out

    def _run(self, b: Bucket, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        spec, n = self.spec, len(src_ids)
        steps = max(limits)
        src = np.full((b.rows, b.src_len), spec.pad_id, dtype=np.int64)
        src[n:, 0] = spec.eos_id  # padding rows: a one-token source, so no softmax is over nothing
        for i, s in enumerate(src_ids):
            src[i, : len(s)] = s
        enc = self.encoder.io_binding()
        enc.bind_cpu_input("src_ids", src)
        enc.bind_cpu_input("expand", np.array(1, dtype=np.int64))
        for name in self.encoder_outputs:
            enc.bind_ortvalue_output(name, b.encoded[name])
        self.encoder.run_with_iobinding(enc)
        lim = np.ones(b.rows, dtype=np.int64)
        lim[:n] = limits
        b.shared["limits"].update_inplace(lim)
        first = b.sets[0]
        first["tokens"].update_inplace(np.full(b.rows, spec.decoder_start_id, dtype=np.int64))
        first["pos"].update_inplace(np.zeros(1, dtype=np.int64))
        first["finished"].update_inplace(np.arange(b.rows) >= n)
        first["history"].update_inplace(np.full((b.rows, b.steps), spec.eos_id, dtype=np.int64))
        last, runs = 0, b.thread_runs()
        for t in range(steps):
            self.step.run_with_iobinding(b.bindings[t % 2], b.run_options[t % 2])
            runs[t % 2] += 1
            last = 1 - t % 2
            if b.sets[last]["finished"].numpy().all():
                break
        return strip_eos(b.sets[last]["history"].numpy()[:n, :steps], spec.eos_id)

    def beam_ids(self, src_ids: list[list[int]], limits: list[int], cfg: SearchConfig) -> list[list[int]]:
        with GPU_WORK.shared():  # not wrapped by the service (takes_gpu_work): never beside a capture
            return super().beam_ids(src_ids, limits, cfg)
