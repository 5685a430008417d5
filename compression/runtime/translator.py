"""Translate with exported ONNX graphs on ONNX Runtime (no torch: the service and its image use this).

The search is ``compression.runtime.search``, the same NumPy code the PyTorch translator runs, so the two
backends can only differ through their log-probabilities. Tensors that stay on the device between
steps (cross keys/values, the source mask, the self-attention cache) are ONNX Runtime ``OrtValue``s
passed through IOBinding: under CUDA the cache never leaves the GPU; only the tokens, the beam
reordering (N int64 each) and the log-probabilities (N x V; for greedy search under CUDA, only their
argmax, N int64) cross to the host.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from compression.runtime import catalogue
from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.search import LengthBatchedTranslator, SearchConfig, pad_batch, search_ids
from compression.runtime.sessions import SessionFactory, argmax_graph, cuda_fallback_reason, row_selector
from compression.runtime.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class OrtStepper:
    """One batch's encoder outputs and decoder cache as OrtValues; see ``compression.runtime.search.Stepper``.

    Rows whose last token is EOS are finished: both searches of ``compression.runtime.search`` ignore their
    scores (greedy overwrites them with EOS, beam search never extends them), so they are not computed.
    Once the finished rows are a quarter of the batch, the batch shrinks to the live rows (the cache
    through the decoder's ``reorder`` input, the encoder outputs through ``row_selector``): a batch of
    32 sentences of mixed lengths no longer decodes its longest sentence 32 rows wide.
    """

    SHRINK = 0.75  # shrink when live rows <= this fraction of the rows computed
    DEVICE_ARGMAX_ROWS = 8  # fewer live rows: copying their scores costs less than one more session run

    def __init__(self, tr: OnnxTranslator, src: np.ndarray, expand: int):
        self.tr = tr
        enc = tr.encoder.io_binding()
        enc.bind_cpu_input("src_ids", src)
        enc.bind_cpu_input("expand", np.array(expand, dtype=np.int64))
        for name, value in tr.encoder_fed.items():  # weights the runtime holds once (graphs built in memory)
            enc.bind_ortvalue_input(name, value)
        for name in tr.encoder_outputs:
            enc.bind_output(name, tr.device_type, tr.device_id)
        tr.encoder.run_with_iobinding(enc)
        self.all_fixed = enc.get_outputs()  # src_mask, cross_* for every row
        self.fixed = dict(zip(tr.encoder_outputs, self.all_fixed, strict=True))  # ... for the rows computed
        self.n = src.shape[0] * expand
        self.rows = np.arange(self.n, dtype=np.int64)  # original rows computed (and held in the cache), sorted
        s = tr.spec
        empty = ort.OrtValue.ortvalue_from_numpy(np.zeros((self.n, s.n_heads, 0, s.head_dim), dtype=s.float_dtype))
        self.past = {name: empty for name in tr.past_inputs}  # zero-length cache (a host tensor: nothing to copy)

    def _select_fixed(self, rows: np.ndarray) -> None:
        tr = self.tr
        b = tr.selector.io_binding()
        b.bind_cpu_input("rows", rows)
        for i, value in enumerate(self.all_fixed):
            b.bind_ortvalue_input(f"x{i}", value)
            b.bind_output(f"y{i}", tr.device_type, tr.device_id)
        tr.selector.run_with_iobinding(b)
        self.fixed = dict(zip(tr.encoder_outputs, b.get_outputs(), strict=True))

    def _decode(self, last: np.ndarray, reorder: np.ndarray | None,
                scores_device: str = "cpu") -> tuple[np.ndarray, ort.OrtValue] | None:
        """One decoder step for the rows still decoding: (rows computed, their log-probs (rows, V) as an
        OrtValue on ``scores_device``), or None when every row has finished."""
        tr = self.tr
        held = self.rows  # rows whose cache the previous step produced
        live = np.flatnonzero(last != tr.spec.eos_id)
        if live.size == 0:
            return None
        rows = held
        if live.size <= self.SHRINK * held.size or not np.isin(live, held).all():
            rows = live
            self._select_fixed(rows)
        source = rows if reorder is None else np.asarray(reorder, dtype=np.int64)[rows]  # row each one continues
        pos = np.searchsorted(held, source).clip(max=held.size - 1)
        missing = held[pos] != source
        if missing.any():
            if np.isin(rows[missing], live).any():
                raise RuntimeError("a live row continues a finished one: the search broke the stepper's contract")
            pos[missing] = 0  # finished rows computed as padding: any cache row will do
        b = tr.decoder.io_binding()
        b.bind_cpu_input("tokens", np.ascontiguousarray(last[rows], dtype=np.int64))
        b.bind_cpu_input("reorder", pos.astype(np.int64))
        for name, value in self.fixed.items():
            b.bind_ortvalue_input(name, value)
        for name, value in self.past.items():
            b.bind_ortvalue_input(name, value)
        for name, value in tr.decoder_fed.items():
            b.bind_ortvalue_input(name, value)
        if scores_device == "cpu":
            b.bind_output("log_probs", "cpu")
        else:
            b.bind_output("log_probs", tr.device_type, tr.device_id)
        for name in tr.present_outputs:
            b.bind_output(name, tr.device_type, tr.device_id)
        tr.decoder.run_with_iobinding(b)
        outs = b.get_outputs()
        self.past = dict(zip(tr.past_inputs, outs[1:], strict=True))
        self.rows = rows
        return rows, outs[0]

    def step(self, last: np.ndarray, reorder: np.ndarray | None) -> np.ndarray:
        done = self._decode(last, reorder)
        if done is None:
            return np.zeros((self.n, self.tr.spec.vocab_size), dtype=np.float32)
        rows, value = done
        logp = value.numpy()
        if rows.size == self.n:
            return logp
        full = np.zeros((self.n, logp.shape[1]), dtype=np.float32)  # finished rows: ignored by the search
        full[rows] = logp
        return full

    def step_argmax(self, last: np.ndarray) -> np.ndarray:
        """``step(last, None).argmax(-1)`` (greedy search calls this when a stepper has it). With
        ``device_argmax`` the argmax runs where the log-probs are (the GPU): N ids cross to the host
        instead of N x V scores. The same values and ArgMax's first-index rule: the same tokens."""
        tr = self.tr
        if not tr.device_argmax or np.count_nonzero(last != tr.spec.eos_id) < self.DEVICE_ARGMAX_ROWS:
            return self.step(last, None).argmax(-1)
        done = self._decode(last, None, tr.device_type)
        if done is None:
            return np.zeros(self.n, dtype=np.int64)
        rows, value = done
        b = tr.argmax.io_binding()
        b.bind_ortvalue_input("scores", value)
        b.bind_output("best", "cpu")
        tr.argmax.run_with_iobinding(b)
        best = b.get_outputs()[0].numpy()
        if rows.size == self.n:
            return best
        full = np.zeros(self.n, dtype=np.int64)  # finished rows: overwritten with EOS by the search
        full[rows] = best
        return full


class OnnxTranslator(LengthBatchedTranslator):
    """Greedy/beam translation over an exported variant directory (verified against its manifest first)."""

    backend = "onnx"
    directory: Path | None  # None when the graphs were built in memory (compression.runtime.memory)

    def __init__(self, directory: Path | str, sessions: SessionFactory | None = None):
        directory = catalogue.require_exported(directory)
        sessions = (sessions or SessionFactory()).intra()  # no row groups: one call per step
        # every byte is checked before ONNX Runtime reads any of it
        self.manifest = manifest_lib.verify(directory)
        self.directory = directory
        self.spec = fmt.GraphSpec.load(directory)
        self.tokenizer = Tokenizer(directory / fmt.TOKENIZER_FILE)
        if self.tokenizer.vocab_size != self.spec.vocab_size:
            raise ValueError(f"{directory}: tokenizer has {self.tokenizer.vocab_size} pieces, the graphs {self.spec.vocab_size}")
        encoder = sessions.session(directory / fmt.ENCODER_FILE)
        decoder = sessions.session(directory / fmt.DECODER_FILE)
        self._attach(encoder, decoder, sessions, directory.name)

    def _attach(self, encoder: tuple[ort.InferenceSession, str], decoder: tuple[ort.InferenceSession, str],
                sessions: SessionFactory, label: str, fed: dict[str, ort.OrtValue] | None = None) -> None:
        """Take the encoder and decoder sessions (each with its provider) and open the helper sessions
        (``spec`` is set): shared by the directory constructor and translators built in memory. ``fed``:
        weights the graphs take as inputs (one OrtValue, bound to every run of the sessions that use it)."""
        (self.encoder, enc_provider), (self.decoder, self.provider) = encoder, decoder
        fed = fed or {}
        self.encoder_fed = {i.name: fed[i.name] for i in self.encoder.get_inputs() if i.name in fed}
        self.decoder_fed = {i.name: fed[i.name] for i in self.decoder.get_inputs() if i.name in fed}
        if sessions.device == "cuda" and self.provider != "CUDAExecutionProvider":
            log.warning("CUDA requested but %s: running %s on %s", cuda_fallback_reason(), label, self.provider)
        if enc_provider != self.provider:
            log.warning("encoder runs on %s but decoder on %s", enc_provider, self.provider)
        self.device_type = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        self.device_id = 0
        self.provider_note = ""
        if self.device_type == "cuda" and self.spec.precision == "int8":
            self.provider_note = "int8 MatMulInteger/DynamicQuantize nodes run partly on the CPU with host copies"
            log.warning("%s: %s", label, self.provider_note)
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]
        self.selector, _ = sessions.session(row_selector([o.type for o in self.encoder.get_outputs()]),
                                            self.encoder.get_providers())
        # greedy under CUDA: argmax on the GPU, so the (N, V) log-probs never cross to the host
        self.argmax, _ = sessions.session(argmax_graph(), self.decoder.get_providers())
        self.device_argmax = self.device_type == "cuda" and sessions.device_argmax
        L = self.spec.decoder_layers
        self.past_inputs = [n for i in range(L) for n in fmt.past_names(i)]
        self.present_outputs = [n for i in range(L) for n in fmt.present_names(i)]
        missing = {"log_probs", *self.present_outputs} - {o.name for o in self.decoder.get_outputs()}
        if missing:
            raise ValueError(f"{label}/{fmt.DECODER_FILE} lacks outputs {sorted(missing)}; re-export the variant")

    @property
    def name(self) -> str:
        return str(self.manifest.get("name"))

    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig | None = None) -> list[list[int]]:
        s = self.spec
        cfg = (cfg or SearchConfig()).capped(s.max_positions)
        src_ids = [x[: s.max_positions] for x in src_ids]
        stepper = OrtStepper(self, pad_batch(src_ids, s.pad_id), cfg.beam)
        return search_ids(stepper, src_ids, cfg, s.decoder_start_id, s.eos_id)


def load_translator(directory: Path | str | None = None, variant: str | None = None,
                    sessions: SessionFactory | None = None) -> LengthBatchedTranslator:
    """An ``OnnxTranslator`` for an exported variant.

    ``directory`` is an exported variant, or a root searched for the export whose manifest is named
    ``variant``. A PyTorch model or compressed variant directory (e.g. models/base) stands for its export
    under the export root (build/onnx, or $TZIP_ONNX_ROOT), found by its manifest name.
    """
    directory = Path(directory) if directory is not None else catalogue.export_root()
    if variant is None and catalogue.is_exported(directory):
        return open_translator(directory, sessions)
    root = directory
    if (directory / manifest_lib.MANIFEST).exists() and not catalogue.is_exported(directory):
        variant = variant or manifest_lib.read(directory).get("name")  # a torch checkpoint: its export
        root = catalogue.export_root()
    if variant is None:
        raise ValueError(f"{directory} is not an exported variant; name one with variant= (see catalogue.list_exported)")
    return open_translator(catalogue.find_exported(variant, root), sessions)


def open_translator(directory: Path | str, sessions: SessionFactory | None = None) -> LengthBatchedTranslator:
    """The translator of an exported variant directory, whatever its storage: graph files, or (storage
    "stored") the compressed variant's own files, from which the graphs are built in memory."""
    directory, sessions = Path(directory), sessions or SessionFactory()
    if catalogue.is_exported(directory) and fmt.GraphSpec.load(directory).storage == "stored":
        from compression.runtime.memory import load_memory_translator

        return load_memory_translator(directory, sessions=sessions)
    if sessions.greedy_loop and sessions.cuda_graph and sessions.providers()[0] == "CUDAExecutionProvider":
        from compression.runtime.static_greedy import StaticGreedyTranslator

        static = StaticGreedyTranslator(directory, sessions)  # one CUDA graph launch per token
        if static.cuda_graphs:
            return static
        log.warning("%s: %s; greedy runs the ONNX Loop instead", directory.name, static.cuda_graph_note)
    if sessions.greedy_loop:  # greedy in one ONNX Loop run per batch; beam search step by step
        from compression.runtime.greedy import GreedyLoopTranslator

        return GreedyLoopTranslator(directory, sessions)
    return OnnxTranslator(directory, sessions)
