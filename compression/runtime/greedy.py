"""Greedy translation in two ONNX Runtime calls per batch (encoder, then the ``onnx_greedy`` Loop); no torch.

``GreedyLoopTranslator`` is a drop-in for ``runtime.OnnxTranslator``: same export directory, same
``translate`` / ``translate_ids``, token-identical greedy output (``compression.runtime.search.greedy`` with
each sentence's own length limit). Beam search (``beam > 1``) is one run too: the ``graphs_beam`` Loop
(``compression.runtime.search.beam_search`` rule for rule), built on first use.

Row groups (``SessionFactory.workers`` = N > 1): a batch is dealt into N groups of rows, each decoded by
its own run of the same sessions at the same time (N - 1 from a thread pool, one in the calling thread).
Every row's tokens are the same as in one run of the whole batch: the Loop computes each row on its own
(fp32; int8 quantizes activations per row), which the tests check.

Device: the inputs (B x S ids, B limits) and the output (B x T ids) are the only host transfers; the
encoder outputs (IOBinding) and the KV cache (loop-carried) live where the sessions run (under CUDA, on
the GPU). The loop graph is built in memory from the variant's decoder when the translator starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.catalogue import require_exported
from compression.runtime.graphs_beam import BEAM_OUTPUT, build_beam
from compression.runtime.graphs_greedy import GREEDY_OUTPUT, build_greedy
from compression.runtime.search import LengthBatchedTranslator, SearchConfig, pad_batch
from compression.runtime.sessions import SessionFactory, cuda_fallback_reason
from compression.runtime.tokenizer import Tokenizer
from compression.runtime.translator import OnnxTranslator

log = logging.getLogger(__name__)


def strip_eos(tokens: np.ndarray, eos_id: int) -> list[list[int]]:
    """(B, T) ids -> each row up to (not including) its first EOS."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


def bind_loop_run(encoder: ort.InferenceSession, encoder_outputs: list[str], device_type: str,
                  session: ort.InferenceSession, src: np.ndarray, expand: int, limits: list[int],
                  encoder_fed: dict[str, ort.OrtValue] | None = None,
                  loop_fed: dict[str, ort.OrtValue] | None = None) -> ort.IOBinding:
    """Run the encoder over ``src`` (padded ids; each row ``expand`` times) and bind its outputs, where they are
    (under CUDA, on the GPU), and the limits as inputs of one run of a Loop ``session``. ``encoder_fed`` /
    ``loop_fed``: weights the runtime holds once (graphs built in memory), bound to each run of that session."""
    enc = encoder.io_binding()
    enc.bind_cpu_input("src_ids", src)
    enc.bind_cpu_input("expand", np.array(expand, dtype=np.int64))
    for name, value in (encoder_fed or {}).items():
        enc.bind_ortvalue_input(name, value)
    for name in encoder_outputs:
        enc.bind_output(name, device_type)  # stays on the device: the loop reads it there
    encoder.run_with_iobinding(enc)
    b = session.io_binding()
    for name, value in zip(encoder_outputs, enc.get_outputs(), strict=True):
        b.bind_ortvalue_input(name, value)
    for name, value in (loop_fed or {}).items():
        b.bind_ortvalue_input(name, value)
    b.bind_cpu_input("limits", np.asarray(limits, dtype=np.int64))
    return b


def greedy_tokens(session: ort.InferenceSession, b: ort.IOBinding, eos_id: int) -> list[list[int]]:
    """Run a greedy Loop ``session`` bound by ``bind_loop_run``: each row's tokens up to its first EOS."""
    b.bind_output(GREEDY_OUTPUT, "cpu")
    session.run_with_iobinding(b)
    return strip_eos(b.get_outputs()[0].numpy(), eos_id)


def row_groups(n: int, groups: int) -> list[list[int]]:
    """Rows 0..n-1 dealt round-robin into min(groups, n) groups. Batches are sorted by length, so every
    group gets long and short sentences alike and the groups finish at about the same time."""
    k = max(1, min(groups, n))
    return [list(range(g, n, k)) for g in range(k)]


class ExportGreedy(LengthBatchedTranslator):
    """What the greedy translators of an export share (the Loop here, CUDA graphs in ``static_greedy``): the
    verified manifest, spec, tokenizer and encoder session; ``greedy_ids`` by the subclass, beam search by the
    ``graphs_beam`` Loop (its session created on first use: a service that never asks for a beam never pays
    for it)."""

    def __init__(self, directory: Path | str, sessions: SessionFactory):
        directory = require_exported(directory)
        self.manifest = manifest_lib.verify(directory)
        self.directory, self.factory = directory, sessions
        self.spec = fmt.GraphSpec.load(directory)
        self.tokenizer = Tokenizer(directory / fmt.TOKENIZER_FILE)
        self.encoder, self.provider = sessions.session(directory / fmt.ENCODER_FILE)  # row groups share it
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]
        self._stepwise: OnnxTranslator | None = None
        self._beam_session: ort.InferenceSession | None = None
        self._beam_lock = threading.Lock()

    def _found_provider(self, provider: str) -> None:
        """Record the provider that really runs the decoding (warn when CUDA was asked for but is not it)."""
        self.provider = provider
        self.device_type = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
        if self.factory.device == "cuda" and self.device_type != "cuda":
            log.warning("CUDA requested but %s: running %s on %s", cuda_fallback_reason(), self.directory.name, provider)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name"))

    @property
    def stepwise(self) -> OnnxTranslator:
        """The one-session-run-per-token translator (the reference the Loops are tested against)."""
        if self._stepwise is None:
            self._stepwise = OnnxTranslator(self.directory, self.factory.intra())
        return self._stepwise

    @property
    def beam_session(self) -> ort.InferenceSession:
        with self._beam_lock:  # two first beam requests at once build it once
            if self._beam_session is None:
                self._beam_session, _ = self.factory.session(build_beam(self.directory).SerializeToString())
            return self._beam_session

    def greedy_ids(self, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        raise NotImplementedError

    def _loop_binding(self, session: ort.InferenceSession, src_ids: list[list[int]], expand: int,
                      limits: list[int]) -> ort.IOBinding:
        """``bind_loop_run`` over these sources with this export's encoder."""
        return bind_loop_run(self.encoder, self.encoder_outputs, self.device_type, session,
                             pad_batch(src_ids, self.spec.pad_id), expand, limits)

    def beam_ids(self, src_ids: list[list[int]], limits: list[int], cfg: SearchConfig) -> list[list[int]]:
        """``search.beam_search`` over these sources: one run of the encoder (each row repeated ``beam``
        times) and one of the beam Loop."""
        session = self.beam_session
        b = self._loop_binding(session, src_ids, cfg.beam, limits)
        b.bind_cpu_input("beam", np.array(cfg.beam, dtype=np.int64))
        b.bind_cpu_input("length_penalty", np.array(cfg.length_penalty, dtype=np.float64))
        b.bind_output(BEAM_OUTPUT, "cpu")
        session.run_with_iobinding(b)
        return strip_eos(b.get_outputs()[0].numpy(), self.spec.eos_id)

    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig | None = None) -> list[list[int]]:
        cfg = (cfg or SearchConfig()).capped(self.spec.max_positions)
        src_ids = [x[: self.spec.max_positions] for x in src_ids]
        limits = [cfg.limit(len(s)) for s in src_ids]
        if cfg.beam != 1:
            return self.beam_ids(src_ids, limits, cfg)
        return self.greedy_ids(src_ids, limits)


class GreedyLoopTranslator(ExportGreedy):
    backend = "onnx-loop"

    def __init__(self, directory: Path | str, sessions: SessionFactory | None = None):
        sessions = sessions or SessionFactory()
        super().__init__(directory, sessions)
        # batches shrink as the step-wise runtime does (the phase Loop). One session serves every batch size: a
        # session over a Loop holds about twice the decoder's weights (base: 74 MiB), and the token-Loop-only
        # graph (build_greedy(shrink=False)) that a batch of one could use was within the noise of it at batch 1
        # (same tokens), so it is not built
        self.session = sessions.session(build_greedy(self.directory, shrink=True).SerializeToString())[0]
        self._found_provider(self.session.get_providers()[0])
        self.workers = sessions.workers
        self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="tzip-rows") if self.workers > 1 else None

    def greedy_ids(self, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        """``search.greedy`` over these sources with these per-sentence limits: one session run per row group."""
        return self._in_groups(self._greedy_run, src_ids, limits)

    def beam_ids(self, src_ids: list[list[int]], limits: list[int], cfg: SearchConfig) -> list[list[int]]:
        """``search.beam_search``: one run of the beam Loop per row group (sentences, each with its beams)."""
        return self._in_groups(lambda src, lim: ExportGreedy.beam_ids(self, src, lim, cfg), src_ids, limits)

    def _in_groups(self, run: Callable[[list[list[int]], list[int]], list[list[int]]], src_ids: list[list[int]],
                   limits: list[int]) -> list[list[int]]:
        groups = row_groups(len(src_ids), self.workers)
        if self._pool is None or len(groups) == 1:
            return run(src_ids, limits)
        jobs = [self._pool.submit(run, [src_ids[i] for i in rows], [limits[i] for i in rows]) for rows in groups[1:]]
        done = [run([src_ids[i] for i in groups[0]], [limits[i] for i in groups[0]])]
        done += [job.result() for job in jobs]
        out: list[list[int]] = [[] for _ in src_ids]
        for rows, hyps in zip(groups, done, strict=True):
            for i, hyp in zip(rows, hyps, strict=True):
                out[i] = hyp
        return out

    def _greedy_run(self, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        """``search.greedy`` over these sources in one run of the encoder and one of the Loop."""
        return greedy_tokens(self.session, self._loop_binding(self.session, src_ids, 1, limits), self.spec.eos_id)
