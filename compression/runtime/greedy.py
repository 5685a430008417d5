"""Greedy translation in two ONNX Runtime calls per batch (encoder, then the ``onnx_greedy`` Loop); no torch.

``GreedyLoopTranslator`` is a drop-in for ``runtime.OnnxTranslator``: same export directory, same
``translate`` / ``translate_ids``, token-identical greedy output (``compression.runtime.search.greedy`` with
each sentence's own length limit). Beam search is not in the graph: ``beam > 1`` runs the step-wise
``OnnxTranslator`` (created on first use).

Device: the inputs (B x S ids, B limits) and the output (B x T ids) are the only host transfers; the
encoder outputs (IOBinding) and the KV cache (loop-carried) live where the sessions run (under CUDA, on
the GPU). The loop graph is built in memory from the variant's decoder when the translator starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.catalogue import require_exported
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


class GreedyLoopTranslator(LengthBatchedTranslator):
    backend = "onnx-loop"

    def __init__(self, directory: Path | str, sessions: SessionFactory | None = None):
        directory = require_exported(directory)
        sessions = sessions or SessionFactory()
        self.manifest = manifest_lib.verify(directory)
        self.directory, self.factory = directory, sessions
        self.spec = fmt.GraphSpec.load(directory)
        self.tokenizer = Tokenizer(directory / fmt.TOKENIZER_FILE)
        self.encoder, _ = sessions.session(directory / fmt.ENCODER_FILE)
        # batches shrink as the step-wise runtime does; a batch of one cannot, and skips the If that would
        self.sessions = {shrink: sessions.session(build_greedy(directory, shrink).SerializeToString())[0]
                         for shrink in (True, False)}
        self.provider = self.sessions[True].get_providers()[0]
        self.device_type = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]
        if sessions.device == "cuda" and self.provider != "CUDAExecutionProvider":
            log.warning("CUDA requested but %s: running %s on %s", cuda_fallback_reason(), directory.name, self.provider)
        self._stepwise: OnnxTranslator | None = None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name"))

    @property
    def stepwise(self) -> OnnxTranslator:
        """The one-session-run-per-token translator, for beam search."""
        if self._stepwise is None:
            self._stepwise = OnnxTranslator(self.directory, self.factory)
        return self._stepwise

    def greedy_ids(self, src_ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        """``search.greedy`` over these sources with these per-sentence limits, in one session run."""
        enc = self.encoder.io_binding()
        enc.bind_cpu_input("src_ids", pad_batch(src_ids, self.spec.pad_id))
        enc.bind_cpu_input("expand", np.array(1, dtype=np.int64))
        for name in self.encoder_outputs:
            enc.bind_output(name, self.device_type)  # stays on the device: the loop reads it there
        self.encoder.run_with_iobinding(enc)
        session = self.sessions[len(src_ids) > 1]
        b = session.io_binding()
        for name, value in zip(self.encoder_outputs, enc.get_outputs(), strict=True):
            b.bind_ortvalue_input(name, value)
        b.bind_cpu_input("limits", np.asarray(limits, dtype=np.int64))
        b.bind_output(GREEDY_OUTPUT, "cpu")
        session.run_with_iobinding(b)
        return strip_eos(b.get_outputs()[0].numpy(), self.spec.eos_id)

    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig | None = None) -> list[list[int]]:
        cfg = (cfg or SearchConfig()).capped(self.spec.max_positions)
        if cfg.beam != 1:
            return self.stepwise.translate_ids(src_ids, cfg)
        src_ids = [x[: self.spec.max_positions] for x in src_ids]
        return self.greedy_ids(src_ids, [cfg.limit(len(s)) for s in src_ids])
