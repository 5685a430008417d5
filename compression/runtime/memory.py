"""Serve a variant from graphs built in memory, with its weights held once (no torch).

``graphs_int8.build_runtime_graphs`` gives serialized graphs that declare their weights without holding
them and the arrays themselves. Every declared array becomes an ``OrtValue`` handed to the sessions that
use it through ``SessionOptions.add_external_initializers``. ONNX Runtime (1.2x and later) COPIES such
initializers into each session, then frees its copy of every weight a kernel prepacked: once the sessions
exist our arrays are garbage, and they are released (``ort_copies_initializers`` checks, once per
process, that this runtime really copies; otherwise they are kept). The arrays in ``graphs.fed`` (the
tied embedding of the ``u8`` form) are graph inputs instead: held once here and bound to every run, so
the encoder, the decoder's Gather and the logits all read the same bytes. The serialized graphs are
dropped once the sessions exist. ``MemoryOptions`` holds the ONNX Runtime settings that change resident
memory (measured in benchmarks/memory/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.graphs_int8 import (
    DEFAULT_MATMUL,
    RuntimeGraphs,
    build_runtime_graphs,
    declared,
    embed_weights,
    read_variant,
)
from compression.runtime.search import SearchConfig, pad_batch
from compression.runtime.sessions import SessionFactory
from compression.runtime.tokenizer import Tokenizer, shared_tokenizer
from compression.runtime.translator import OnnxTranslator

ARENAS = ("default", "off", "shared")  # per-session CPU arena | no arena | one env arena, kSameAsRequested


@dataclass(frozen=True)
class MemoryOptions:
    prepacking: bool = True  # False: "session.disable_prepacking" (kernels read the shared int8 weights as they are)
    # True: the sessions get the arrays as OrtValues (ONNX Runtime copies declared initializers, then ours
    # are released; graph inputs stay ours, bound to every run); False: the weights are embedded in each
    # serialized graph, dropped after the session is made
    share: bool = True
    arena: str = "default"

    def __post_init__(self) -> None:
        if self.arena not in ARENAS:
            raise ValueError(f"arena must be one of {ARENAS}, got {self.arena!r}")


_SHARED_ARENA: list[bool] = []  # registered once per process


def _register_shared_arena() -> None:
    if _SHARED_ARENA:
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # max_mem 0 = no limit, arena_extend_strategy 1 = kSameAsRequested, defaults for the rest
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
    _SHARED_ARENA.append(True)


def memory_session_options(opts: MemoryOptions, sessions: SessionFactory) -> ort.SessionOptions:
    so = sessions.options()
    if not opts.prepacking:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if opts.arena == "off":
        so.enable_cpu_mem_arena = False
    elif opts.arena == "shared":
        _register_shared_arena()
        so.add_session_config_entry("session.use_env_allocators", "1")
    return so


_COPIES: list[bool] = []  # ort_copies_initializers(), measured once per process


def ort_copies_initializers() -> bool:
    """Whether this ONNX Runtime copies initializers given by ``add_external_initializers`` (then the caller's
    arrays may be freed once the session exists): a 4 x 4 Gather table is changed after the session is made,
    and the session must still answer with the old rows."""
    if not _COPIES:
        import numpy as np
        from onnx import TensorProto, helper

        table = np.arange(16, dtype=np.int8).reshape(4, 4)
        graph = helper.make_graph([helper.make_node("Gather", ["w", "ids"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])], [declared("w", table)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", fmt.OPSET)])
        model.ir_version = 9
        so = ort.SessionOptions()
        value = ort.OrtValue.ortvalue_from_numpy(table)
        so.add_external_initializers(["w"], [value])
        session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        table[1] = -1
        _COPIES.append(bool(np.array_equal(session.run(None, {"ids": np.array([1])})[0][0], np.arange(4, 8))))
    return _COPIES[0]


class SharedWeights:
    """One OrtValue per array of a ``RuntimeGraphs``: ``values`` for the declared initializers, ``fed`` for the
    graph inputs (the arrays stay alive as long as this does, or until ``release``)."""

    def __init__(self, graphs: RuntimeGraphs):
        self.arrays = graphs.arrays
        self.values = {n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in self.arrays.items() if n not in graphs.fed}
        self.fed = {n: ort.OrtValue.ortvalue_from_numpy(self.arrays[n]) for n in graphs.fed}

    @property
    def held_bytes(self) -> int:
        """Bytes of weights this object keeps alive (the sessions' own copies not included)."""
        return sum(a.nbytes for a in self.arrays.values())

    def release(self) -> None:
        """Drop the initializers' arrays (the sessions hold copies); keep the fed ones."""
        self.values.clear()
        self.arrays = {n: a for n, a in self.arrays.items() if n in self.fed}

    def options_for(self, model: bytes, opts: MemoryOptions, sessions: SessionFactory) -> ort.SessionOptions:
        """Session options that hand ``model`` the shared values of the initializers it declares."""
        so = memory_session_options(opts, sessions)
        declared = [t.name for t in onnx.load_from_string(model).graph.initializer if t.name in self.values]
        if declared:
            so.add_external_initializers(declared, [self.values[n] for n in declared])
        return so

    def embedded(self, model: bytes) -> bytes:
        """``model`` with the data of its declared initializers inside (``share=False``)."""
        return embed_weights(model, self.arrays).SerializeToString()


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise): the build's temporaries are
    gone, and resident memory should show it."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class MemoryTranslator(OnnxTranslator):
    """An ``OnnxTranslator`` over in-memory graphs + tokenizer + spec instead of an export directory."""

    def __init__(self, graphs: RuntimeGraphs, tokenizer: Tokenizer, name: str, sessions: SessionFactory | None = None,
                 options: MemoryOptions = MemoryOptions(), release: bool = True):
        sessions = (sessions or SessionFactory()).intra()  # step-wise decoding: no row groups
        loop = sessions.stored_loop
        if tokenizer.vocab_size != graphs.spec.vocab_size:
            raise ValueError(f"{name}: tokenizer has {tokenizer.vocab_size} pieces, the graphs {graphs.spec.vocab_size}")
        self.manifest = {"name": name, **graphs.info}
        self.directory = None
        self.spec = graphs.spec
        self.tokenizer = tokenizer
        self.options = options
        weights = SharedWeights(graphs)
        self.weight_bytes = graphs.weight_bytes  # the weights the graphs use, each once (int8 + scales + vectors)

        def open_session(model: bytes) -> tuple[ort.InferenceSession, str]:
            if options.share:
                return sessions.session(model, options=weights.options_for(model, options, sessions))
            return sessions.session(weights.embedded(model), options=memory_session_options(options, sessions))

        made = [open_session(graphs.models[file]) for file in (fmt.ENCODER_FILE, fmt.DECODER_FILE)]
        self.loop_session: ort.InferenceSession | None = None
        if loop:  # greedy in one run of graphs_greedy's Loop over this decoder step, weights hoisted and shared
            from compression.runtime.graphs_greedy import greedy_model

            step = onnx.load_from_string(graphs.models[fmt.DECODER_FILE])
            self.loop_session = open_session(greedy_model(step, graphs.spec, fed=tuple(graphs.fed)).SerializeToString())[0]
            del step
        self.weights = weights
        if release:  # the sessions hold what they need; the serialized graphs (and arrays) are garbage now
            graphs.models.clear()
            if not options.share or ort_copies_initializers():
                weights.release()
                graphs.arrays = dict(weights.arrays)
        trim_heap()
        self._attach(made[0], made[1], sessions, name, weights.fed)
        if self.loop_session is not None:
            self.loop_fed = {i.name: weights.fed[i.name] for i in self.loop_session.get_inputs() if i.name in weights.fed}

    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig | None = None) -> list[list[int]]:
        cfg = cfg or SearchConfig()
        if self.loop_session is None or cfg.beam != 1:
            return super().translate_ids(src_ids, cfg)
        from compression.runtime.greedy import bind_loop_run, greedy_tokens

        cfg = cfg.capped(self.spec.max_positions)
        src_ids = [x[: self.spec.max_positions] for x in src_ids]
        b = bind_loop_run(self.encoder, self.encoder_outputs, self.device_type, self.loop_session,
                          pad_batch(src_ids, self.spec.pad_id), 1, [cfg.limit(len(s)) for s in src_ids],
                          self.encoder_fed, self.loop_fed)
        return greedy_tokens(self.loop_session, b, self.spec.eos_id)


def weight_form(sessions: SessionFactory) -> str:
    """int8 on the CPU (MatMulNBits); fp16 (the exact codebook values) where CUDA really runs."""
    return "fp16" if sessions.providers()[0] == "CUDAExecutionProvider" else "int8"


def load_memory_translator(directory: Path | str, weights: str | None = None, matmul: str = DEFAULT_MATMUL,
                           sessions: SessionFactory | None = None,
                           options: MemoryOptions = MemoryOptions()) -> MemoryTranslator:
    """A variant directory (a stored export, a compressed variant or a model; every file verified against its
    manifest first) served from graphs built in memory: what is read from disk is the stored form itself."""
    directory, sessions = Path(directory), sessions or SessionFactory()
    meta = manifest_lib.verify(directory)
    cfg, records = read_variant(directory)
    graphs = build_runtime_graphs(cfg, records, weights or weight_form(sessions), matmul)
    del records
    trim_heap()
    name = str(meta.get("name") or json.loads((directory / "variant.json").read_text()).get("name"))
    tr = MemoryTranslator(graphs, shared_tokenizer(directory / fmt.TOKENIZER_FILE), name, sessions, options)
    tr.manifest = {**meta, **tr.manifest, "name": name}
    tr.directory = directory
    return tr


def memory_attention_model(directory: Path, sessions: SessionFactory) -> bytes:
    """The attention-maps graph of a stored variant, built in memory with its weights inside: the exact
    dequantized values (float32; float16 under CUDA), so the maps show the variant's weights, not int8 noise."""
    cfg, records = read_variant(directory)
    form = "fp16" if weight_form(sessions) == "fp16" else "fp32"
    graphs = build_runtime_graphs(cfg, records, form, files=(fmt.ATTENTION_FILE,))
    return embed_weights(graphs.models[fmt.ATTENTION_FILE], graphs.arrays).SerializeToString()
