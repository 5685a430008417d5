"""The runtime form of a compressed variant: ONNX graphs built in memory whose weights stay small (no torch).

``export`` writes graphs that decode codes + codebooks with constant nodes; ONNX Runtime folds those to
dense float32 when a session starts, so a 4-bit variant is served from more memory than the fp32 base.
Here every linear weight is instead held as int8 (one byte per weight) with one float scale per output
row (``int8_grid.int8_matrix``: every centroid on its row's int8 grid), and the MatMuls run as ONNX
Runtime's int8 kernels; nothing folds back to float32. 1-D tensors (biases, LayerNorm) stay float32, as
``compact.dequantize`` gives them.

Graphs come from ``graphs.build_encoder/build_decoder`` (the same arithmetic) with an ``Int8Weights``
source: it hands out placeholder names, and ``lower`` rewrites every MatMul on a placeholder into one of
``MATMULS``:

- ``u8`` (the default): every activation row (token) quantized to uint8 with its own scale
  (max|row| / 127, zero point 128: batch-invariant), MatMulInteger against uint8 weights (K, N) = q.T + 128
  (u8 x u8: MLAS sums exactly in int32 on every x86, so the grid keeps 8 bits), int32 -> float times the
  column and row scales. The matrices, the tied embedding (one (D, V) table: the input Gathers read its
  columns, the logits multiply by it) and the sinusoid table are graph INPUTS (``RuntimeGraphs.fed``): the
  runtime holds each once and binds it to every run; ONNX Runtime neither copies nor prepacks them (MLAS
  packs panels per call).
- ``nbits8``: com.microsoft MatMulNBits, bits=8, accuracy_level=4: B is (N, K) uint8 = q + 128, activations
  quantized per row and block of 256 in the kernel; the tied embedding is that one uint8 tensor.
- ``dqmm``: com.microsoft DynamicQuantizeMatMul (int8 B (K, N), per-column scale; logits QGemm transB).
- ``integer``: DynamicQuantizeLinear + MatMulInteger + Cast + Mul by scales (logits as dqmm).
  Both quantize the whole activation tensor to uint8 at once (a sentence's result depends on its batch);
  x86 without VNNI saturates u8 x s8 pairs beyond |q| = 63, so these forms use a 7-bit grid (``QMAX``).

The other weights are never put inside the ModelProtos either: each graph declares them as initializers
with "external" data and ``RuntimeGraphs.arrays`` holds the arrays, which the runtime hands to the sessions
(``SessionOptions.add_external_initializers``; ONNX Runtime copies them, see ``memory``).

``weights="fp16"`` builds, for CUDA, float16 graphs whose dense weights hold the codebook values
(``compact.dequantize`` cast to float16), in memory and shared the same way; ``weights="fp32"`` the
float32 ones (the numerics control: exact values).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from compression.runtime import compact
from compression.runtime import onnx_format as fmt
from compression.runtime.graphs import DenseWeights, Graph, build_decoder, build_encoder
from compression.runtime.graphs_attention import build_attention
from compression.runtime.int8_grid import QMAX, int8_matrix
from compression.runtime.model_config import ModelConfig

__all__ = ["MATMULS", "QMAX", "RuntimeGraphs", "build_runtime_graphs", "int8_matrix", "lower", "read_variant"]

# per-row uint8 activations + MatMulInteger u8 x u8 | DynamicQuantizeMatMul |
# DynamicQuantizeLinear + MatMulInteger + Cast + Mul | MatMulNBits, 8 bits, int8 compute
MATMULS = ("u8", "dqmm", "integer", "nbits8")
DEFAULT_MATMUL = "u8"
U8_ZERO = 128  # uint8 = int8 + 128: weights and per-row activations share this zero point
POSITIONS = "positions.f32"  # the sinusoid table, held once (u8 form) instead of folded in every session
NBITS_BLOCK = 256  # MatMulNBits block along K (one scale per row per block: the row's scale, repeated)
NBITS_ACCURACY = 4  # int8 compute: activations quantized per row and block (0: float compute, slower)
WEIGHT_FORMS = ("int8", "fp16", "fp32")  # fp32: dense exact values, the control for the numerics
PLACEHOLDER = "int8:"  # prefix of the names Int8Weights hands out; ``lower`` replaces every use
MS = "com.microsoft"


# -- the weight source and the lowering pass ------------------------------------------------------
class Int8Weights:
    """A ``WeightSource`` over compact records whose matrices are int8 rows + per-row scales.

    ``matrix`` hands out placeholder names ("int8:T:<name>" for a MatMul's B, "int8:rows:<name>" for a
    Gather) that ``lower`` turns into int8 nodes; the arrays those nodes use are collected in ``arrays``
    (shared by every session later): ``<name>.qT`` (in, out) for MatMuls, ``<name>.q`` (rows, cols) for
    the embedding (its logits use it too, through QGemm transB), ``<name>.scale``, ``<name>.f32`` vectors."""

    def __init__(self, records: dict[str, dict], qmax: int = 127, feed: bool = False):
        self.records = records
        self.qmax = qmax
        self.feed = feed  # u8 form: matrices (and the positions) are graph inputs, not initializers
        self.arrays: dict[str, np.ndarray] = {}
        self.fed: set[str] = set()  # arrays the graphs take as inputs (held once by the runtime, see ``lower``)
        self.stacks: dict[str, list[str]] = {}
        self._int8: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _rec(self, name: str) -> dict:
        if name not in self.records:
            raise KeyError(f"parameter {name!r} missing from the compact weights; re-run the compression")
        return self.records[name]

    def int8(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._int8:
            if name in self.stacks:  # outputs side by side = rows stacked
                parts = [self.int8(n) for n in self.stacks[name]]
                self._int8[name] = (np.concatenate([q for q, _ in parts]), np.concatenate([s for _, s in parts]))
            else:
                self._int8[name] = int8_matrix(self._rec(name), self.qmax)
        return self._int8[name]

    def scale(self, name: str) -> str:
        self.arrays.setdefault(f"{name}.scale", self.int8(name)[1])
        return f"{name}.scale"

    def rows(self, name: str) -> tuple[str, str]:
        q, s = self.int8(name)
        self.arrays.setdefault(f"{name}.q", q)
        self.arrays.setdefault(f"{name}.scale", s)
        return f"{name}.q", f"{name}.scale"

    def cols(self, name: str) -> tuple[str, str]:
        q, s = self.int8(name)
        if f"{name}.qT" not in self.arrays:
            self.arrays[f"{name}.qT"] = np.ascontiguousarray(q.T)
        self.arrays.setdefault(f"{name}.scale", s)
        return f"{name}.qT", f"{name}.scale"

    def positions(self, g: Graph, cfg) -> str:
        """The sinusoid table: fed (u8 form: one copy for both graphs) or computed by nodes ONNX Runtime folds."""
        if not self.feed:
            from compression.runtime.graphs import positions_table

            return positions_table(g, cfg)
        from compression.runtime.graphs import sinusoids

        self.arrays.setdefault(POSITIONS, sinusoids(cfg))
        self.fed.add(POSITIONS)
        return POSITIONS

    def u8cols(self, name: str) -> tuple[str, str]:
        """MatMulInteger u8 x u8 form: uint8 (in, out) = q.T + 128 (zero point ``U8_ZERO``), per-column scales.
        u8 x u8 products are summed exactly in int32 by MLAS on every x86 (u8 x s8 saturates without VNNI)."""
        q, s = self.int8(name)
        key = f"{name}.u8T"
        if key not in self.arrays:
            self.arrays[key] = np.ascontiguousarray((q.T.astype(np.int16) + U8_ZERO).astype(np.uint8))
        self.arrays.setdefault(f"{name}.scale", s)
        if self.feed:
            self.fed.add(key)
        return key, f"{name}.scale"

    def blocks(self, name: str) -> tuple[str, str]:
        """MatMulNBits form: uint8 (rows, K / block, block) = q + 128 (its default zero point), scales
        (rows * K / block,). Rows stay the linear's outputs: MatMulNBits' B is (N, K), torch's layout."""
        q, s = self.int8(name)
        rows, k = q.shape
        block = min(NBITS_BLOCK, k)
        if k % block:
            raise ValueError(f"{name}: {k} inputs are not a multiple of the MatMulNBits block {block}")
        if f"{name}.u8" not in self.arrays:
            self.arrays[f"{name}.u8"] = (q.astype(np.int16) + 128).astype(np.uint8).reshape(rows, k // block, block)
            self.arrays[f"{name}.bscale"] = np.repeat(s, k // block)
        return f"{name}.u8", f"{name}.bscale"

    def matrix(self, g: Graph, name: str, transpose: bool) -> str:
        return f"{PLACEHOLDER}{'T' if transpose else 'rows'}:{name}"

    def vector(self, g: Graph, name: str) -> str:
        key = f"{name}.f32"
        if key not in self.arrays:
            self.arrays[key] = compact.dequantize(self._rec(name)).astype(np.float32).reshape(-1)
        return key

    def stacked(self, g: Graph, names: list[str]) -> tuple[str, str]:
        """q, k, v (or every cross k, v) as one MatMul: their int8 rows stacked, biases concatenated."""
        label = f"{names[0]}+{len(names) - 1}"
        self.stacks[f"{label}.weight"] = [f"{n}.weight" for n in names]
        key = f"{label}.bias.f32"
        if key not in self.arrays:
            self.arrays[key] = np.concatenate([self.arrays[self.vector(g, f"{n}.bias")] for n in names])
        return self.matrix(g, f"{label}.weight", True), key


SHARED_LOCATION = "tzip-shared"  # external-data location of a declared initializer (never a file)


def declared(name: str, a: np.ndarray) -> onnx.TensorProto:
    """An initializer with a name, type and shape whose data is "external": the runtime supplies it as
    an OrtValue (``SessionOptions.add_external_initializers``), so the ModelProto holds no weights."""
    t = onnx.TensorProto()
    t.name, t.data_type = name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype)
    t.dims.extend(a.shape)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", SHARED_LOCATION), ("offset", "0"), ("length", str(a.nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _row_quantized(g: Graph, x: str) -> tuple[str, str]:
    """x (..., K) float -> (uint8 (..., K) = round(x / s) + 128, s (..., 1) = max|row| / 127): one scale per
    row (token), so a sentence's result never depends on the other rows of its batch."""
    top = g.op("ReduceMax", g.op("Abs", x), g.i64(-1), keepdims=1)  # (..., 1)
    s = g.op("Div", g.op("Max", top, g.const(np.array(1e-30, np.float32))), g.const(np.array(127.0, np.float32)))
    xq = g.op("Add", g.op("Round", g.op("Div", x, s)), g.const(np.array(float(U8_ZERO), np.float32)))
    return g.op("Cast", xq, to=TensorProto.UINT8), s


def _lower_u8(g: Graph, w: Int8Weights, op: str, form: str, name: str, x: str, y: str) -> None:
    """The ``u8`` form of one node. MatMul: per-row uint8 activations, MatMulInteger against uint8 weights
    (in, out), int32 -> float times column and row scales. The tied embedding is ONE uint8 (D, V) table
    (``<name>.u8T``), a graph input of both graphs: the input Gather reads its columns, the logits multiply by it;
    as an input ONNX Runtime neither copies it per session nor prepacks a second copy (MLAS packs its
    panels per call, ~0.2 ms a step for the logits)."""
    zero = g.const(np.array(U8_ZERO, np.uint8))
    if name == "shared.weight":
        b, s = w.u8cols(name)
    if op == "Gather" and form == "rows" and name == "shared.weight":  # ids (B, T) -> (B, T, D)
        cols = g.op("Transpose", g.op("Gather", b, x, axis=1), perm=[1, 2, 0])  # (D, B, T) -> (B, T, D)
        rows = g.op("Sub", g.op("Cast", cols, to=TensorProto.FLOAT), g.const(np.array(float(U8_ZERO), np.float32)))
        g.op("Mul", rows, g.op("Unsqueeze", g.op("Gather", s, x), g.i64(-1)), out=y)
        return
    if op != "MatMul" or form != "T":
        raise ValueError(f"{op} uses int8 weight {name!r} ({form}): no u8 form for it; extend _lower_u8()")
    if name != "shared.weight":
        b, s = w.u8cols(name)
    xq, xs = _row_quantized(g, x)
    acc = g.op("Cast", g.op("MatMulInteger", xq, b, zero, zero), to=TensorProto.FLOAT)  # (..., out) exact sums
    g.op("Mul", g.op("Mul", acc, s), xs, out=y)


class _Lowering(Graph):
    def fresh(self, hint: str) -> str:  # names apart from those of the graph being lowered
        return f"int8/{super().fresh(hint)}"


def lower(model: onnx.ModelProto, w: Int8Weights, matmul: str = DEFAULT_MATMUL) -> onnx.ModelProto:
    """Rewrite, in place, every node that uses one of ``w``'s placeholders into int8 kernels, and declare
    each array of ``w`` the graph uses as a data-less initializer."""
    if matmul not in MATMULS:
        raise ValueError(f"matmul must be one of {MATMULS}, got {matmul!r}")
    g = _Lowering("lower")  # for its node helpers; its constants join ``model``'s initializers
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        ph = [i for i in node.input if i.startswith(PLACEHOLDER)]
        if not ph:
            nodes.append(node)
            continue
        _, form, name = ph[0].split(":", 2)
        x, y = node.input[1 - list(node.input).index(ph[0])], node.output[0]
        g.nodes = []
        if matmul == "u8" and node.op_type in ("Gather", "MatMul"):
            _lower_u8(g, w, node.op_type, form, name, x, y)
        elif node.op_type == "Gather" and form == "rows" and matmul == "nbits8":  # the logits' uint8 blocks
            u8, _ = w.blocks(name)
            s = w.scale(name)
            rows = g.op("Cast", g.op("Gather", u8, x), to=TensorProto.FLOAT)  # (..., K / block, block)
            rows = g.op("Reshape", rows, g.op("Concat", g.op("Shape", x), g.i64(-1), axis=0))  # (..., D)
            rows = g.op("Sub", rows, g.const(np.array(128.0, np.float32)))
            g.op("Mul", rows, g.op("Unsqueeze", g.op("Gather", s, x), g.i64(-1)), out=y)
        elif node.op_type == "MatMul" and form == "T" and matmul == "nbits8":
            u8, bs = w.blocks(name)
            n, nb, block = w.arrays[u8].shape
            g.op("MatMulNBits", x, u8, bs, out=y, domain=MS, K=nb * block, N=n, bits=8, block_size=block,
                 accuracy_level=NBITS_ACCURACY)
        elif node.op_type == "Gather" and form == "rows":  # int8 rows, then times each row's scale
            q, s = w.rows(name)
            rows = g.op("Cast", g.op("Gather", q, x), to=TensorProto.FLOAT)  # (..., D)
            g.op("Mul", rows, g.op("Unsqueeze", g.op("Gather", s, x), g.i64(-1)), out=y)
        elif node.op_type == "MatMul" and form == "T" and name == "shared.weight":
            # logits h @ E^T on the (V, D) rows the Gather uses: the embedding is held once
            q, s = w.rows(name)
            xq, xs, xz = g.op("DynamicQuantizeLinear", x, n_out=3)
            zp = g.const(np.zeros(w.arrays[s].shape, np.int8))  # QGemm wants one zero point per scale
            g.op("QGemm", xq, xs, xz, q, s, zp, out=y, domain=MS, transB=1)
        elif node.op_type == "MatMul" and form == "T":
            q, s = w.cols(name)
            if matmul == "dqmm":
                g.op("DynamicQuantizeMatMul", x, q, s, out=y, domain=MS)
            else:
                xq, xs, xz = g.op("DynamicQuantizeLinear", x, n_out=3)
                acc = g.op("Cast", g.op("MatMulInteger", xq, q, xz), to=TensorProto.FLOAT)
                g.op("Mul", acc, g.op("Mul", xs, s), out=y)
        else:
            raise ValueError(f"{node.op_type} uses int8 weight {name!r} ({form}): no int8 form for it; extend lower()")
        for n in g.nodes:
            n.name = f"{node.name}{n.name}"
        nodes.extend(g.nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [t for t in model.graph.initializer if t.name not in w.arrays] + list(g.initializers.values())
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + [declared(n, w.arrays[n]) for n in sorted(used)
                                           if n in w.arrays and n not in w.fed])
    for n in sorted(used & w.fed):  # a graph input: ONNX Runtime neither copies nor prepacks it
        a = w.arrays[n]
        model.graph.input.append(onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype),
                                                                    list(a.shape)))
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS, 1))
    return model


# -- in-memory graphs of a variant ------------------------------------------------------------------
@dataclass
class RuntimeGraphs:
    """Serialized graphs without weights, the weights they share, and what the runtime needs to know."""

    models: dict[str, bytes]  # file name (fmt.ENCODER_FILE, ...) -> serialized ModelProto
    arrays: dict[str, np.ndarray]  # shared initializers, each once
    spec: fmt.GraphSpec
    info: dict[str, Any] = field(default_factory=dict)
    fed: tuple[str, ...] = ()  # arrays the graphs take as inputs: the runtime feeds them to every run

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def read_variant(directory: Path | str) -> tuple[Any, dict[str, dict]]:
    """(model config, records) of a variant directory (compact records), or of a model directory
    (safetensors shards read with NumPy, every tensor a dense record), torch-free."""
    directory = Path(directory)
    if (directory / "variant.json").exists():
        info = json.loads((directory / "variant.json").read_text())
        return ModelConfig.from_dict(info["model"]), compact.read_tensors(directory)
    from safetensors.numpy import load_file

    records = {}
    for shard in sorted(directory.glob("*.safetensors")):
        for name, a in load_file(str(shard)).items():
            if name != "positions":  # the sinusoids are computed in the graph
                records[name] = {"kind": "dense", "shape": list(a.shape), "array": a}
    if not records:
        raise FileNotFoundError(f"{directory} holds neither variant.json nor *.safetensors: not a model or variant")
    return ModelConfig.from_dict(json.loads((directory / "config.json").read_text())["model"]), records


BUILDERS = {fmt.ENCODER_FILE: build_encoder, fmt.DECODER_FILE: build_decoder, fmt.ATTENTION_FILE: build_attention}
TRANSLATION_GRAPHS = (fmt.ENCODER_FILE, fmt.DECODER_FILE)


def build_runtime_graphs(cfg, records: dict[str, dict], weights: str = "int8", matmul: str = DEFAULT_MATMUL,
                         attention: bool = False, files: tuple[str, ...] | None = None) -> RuntimeGraphs:
    """The encoder and decoder (with ``attention``, also the attention-maps graph; ``files`` names the
    graphs to build instead) over ``records``, in memory."""
    if weights not in WEIGHT_FORMS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMS}, got {weights!r}")
    names = files or (TRANSLATION_GRAPHS + ((fmt.ATTENTION_FILE,) if attention else ()))
    builders = {n: BUILDERS[n] for n in names}
    models: dict[str, bytes] = {}
    if weights == "int8":
        w = Int8Weights(records, QMAX[matmul], feed=matmul == "u8")
        for name, build in builders.items():
            models[name] = lower(build(cfg, w, np.float32), w, matmul).SerializeToString()
        arrays, fed = w.arrays, tuple(sorted(w.fed))
    else:  # dense, the codebook values (cast once to fp16); every large initializer becomes shared
        dtype = np.float16 if weights == "fp16" else np.float32
        dense = DenseWeights({n: compact.dequantize(r).astype(dtype) for n, r in records.items()})
        arrays, fed = {}, ()
        for name, build in builders.items():
            m = build(cfg, dense, dtype)
            models[name] = _share_initializers(m, arrays).SerializeToString()
    spec = graph_spec(cfg, "fp16" if weights == "fp16" else "fp32")
    return RuntimeGraphs(models, arrays, spec, {"weights": weights, "matmul": matmul}, fed)


def _share_initializers(model: onnx.ModelProto, arrays: dict[str, np.ndarray], min_bytes: int = 1024) -> onnx.ModelProto:
    """Move large initializers out of ``model`` into ``arrays`` (by name; the same name = the same tensor)."""
    from onnx import numpy_helper

    kept = []
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.nbytes < min_bytes:
            kept.append(t)
            continue
        arrays.setdefault(t.name, a)
        kept.append(declared(t.name, a))
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def graph_spec(cfg, precision: str, storage: str = "stored") -> fmt.GraphSpec:
    """What the runtime must know about the graphs of a model config (shape, special tokens, form)."""
    return fmt.GraphSpec(
        decoder_layers=cfg.decoder_layers, n_heads=cfg.n_heads, head_dim=cfg.d_model // cfg.n_heads,
        vocab_size=cfg.vocab_size, max_positions=cfg.max_positions, pad_id=cfg.pad_id, eos_id=cfg.eos_id,
        decoder_start_id=cfg.decoder_start_id, precision=precision, storage=storage)


def embed_weights(model: bytes, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A serialized graph of ``build_runtime_graphs`` with the data of its declared initializers inside."""
    proto = onnx.load_from_string(model)
    for t in proto.graph.initializer:
        if t.name in arrays:
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
            t.raw_data = np.ascontiguousarray(arrays[t.name]).tobytes()
    return proto
