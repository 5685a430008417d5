"""The Transformer as two ONNX graphs, built node by node with onnx.helper (NumPy weights, no torch).

Building the graphs by hand rather than tracing the PyTorch model lets every weight come from any
``WeightSource``: a dense initializer, or codes + codebook / sparse indices decoded inside the graph
(``compression.runtime.graphs_compact``). ONNX Runtime folds such constant sub-graphs once when a session is
created, so the file stays compact and every step runs on plain dense weights.

The arithmetic mirrors ``compression.train.model`` operation for operation (projection, then bias, then the
1/sqrt(Dh) scale; masked scores set to the dtype's minimum; LayerNorm after the residual in post-norm),
so greedy decoding is token-identical to PyTorch. Names of graph inputs/outputs: ``onnx_format``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.runtime import onnx_format as fmt

ELEM_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


class Graph:
    """Accumulates nodes and initializers; ``op`` returns the name(s) of the new node's outputs."""

    def __init__(self, name: str, float_dtype: Any = np.float32):
        self.name = name
        self.dtype = np.dtype(float_dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.memo: dict[Any, str] = {}  # weight sources cache what they emitted
        self.domains: set[str] = set()
        self._count = 0

    @property
    def elem_type(self) -> int:
        return ELEM_TYPE[self.dtype]

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}/{self._count}"

    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1, domain: str = "", **attrs):
        outs = [out] if out is not None else [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"n/{op_type}"), domain=domain, **attrs))
        if domain:
            self.domains.add(domain)
        return outs[0] if n_out == 1 else outs

    def const(self, value: Any, name: str | None = None) -> str:
        """An initializer; ``name`` (a parameter name) is reused if it already exists."""
        if name is not None and name in self.initializers:
            return name
        name = name or self.fresh("const")
        self.initializers[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def i64(self, *values: int) -> str:
        return self.const(np.array(values, dtype=np.int64))

    def scalar(self, value: float) -> str:
        """A float scalar in the graph's dtype (cached)."""
        key = ("scalar", float(value))
        if key not in self.memo:
            self.memo[key] = self.const(np.array(value, dtype=self.dtype))
        return self.memo[key]

    def add_input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def add_output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        """Expose ``value`` as graph output ``name``: renamed in place (an Identity node would copy it,
        e.g. the whole KV cache every step), or through Identity when it is an input, constant or output."""
        produced = any(value in n.output for n in self.nodes)
        if not produced or value in self.initializers or any(o.name == value for o in self.outputs):
            self.op("Identity", value, out=name)
        else:
            for node in self.nodes:
                for field in (node.input, node.output):
                    for j, v in enumerate(field):
                        if v == value:
                            field[j] = name
            self.memo = {k: (name if v == value else v) for k, v in self.memo.items()}
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def to_model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, list(self.initializers.values()))
        opsets = [helper.make_opsetid("", fmt.OPSET)] + [helper.make_opsetid(d, 1) for d in sorted(self.domains)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="tzip")
        model.ir_version = 9  # readable by every ONNX Runtime >= 1.15
        return model


class WeightSource(Protocol):
    """Emits the sub-graph that yields one parameter (by its ``compression.train.model`` name)."""

    def matrix(self, g: Graph, name: str, transpose: bool) -> str: ...

    def vector(self, g: Graph, name: str) -> str: ...


class DenseWeights:
    """Plain initializers from NumPy arrays (cast to the graph's dtype).

    Linear weights are stored transposed (in, out), ready for MatMul. A matrix needed both ways (the
    tied embedding: Gather rows for the input, transposed for the logits) is stored once and transposed
    by a node that ONNX Runtime folds at load.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def _get(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise KeyError(f"parameter {name!r} missing from the weights; is the checkpoint from this model code?")
        return self.arrays[name]

    def matrix(self, g: Graph, name: str, transpose: bool) -> str:
        if not transpose:
            return g.const(self._get(name).astype(g.dtype), name)
        if name in g.initializers:
            key = ("T", name)
            if key not in g.memo:
                g.memo[key] = g.op("Transpose", name, perm=[1, 0])
            return g.memo[key]
        return g.const(np.ascontiguousarray(self._get(name).T.astype(g.dtype)), f"{name}.T")

    def vector(self, g: Graph, name: str) -> str:
        return g.const(self._get(name).astype(g.dtype), name)

    def stacked(self, g: Graph, names: list[str]) -> tuple[str, str]:
        """Weights (in, sum of outs) and biases of several linears side by side, as plain initializers."""
        w = np.concatenate([self._get(f"{n}.weight").T for n in names], axis=1).astype(g.dtype)
        b = np.concatenate([self._get(f"{n}.bias") for n in names]).astype(g.dtype)
        label = f"{names[0]}+{len(names) - 1}"
        return g.const(np.ascontiguousarray(w), f"{label}.weight.T"), g.const(b, f"{label}.bias")


# -- the model's pieces ----------------------------------------------------------------------------
def sinusoids(cfg) -> np.ndarray:
    """The (P, D) float32 table ``positions_table`` computes, in NumPy (float64 sin half then cos half)."""
    pos = np.arange(cfg.max_positions, dtype=np.float64)[:, None]  # (P, 1)
    dim = cfg.d_model
    parts = [fn(pos / np.power(10000.0, 2 * (js // 2) / dim)) for fn, js in ((np.sin, np.arange(0, dim, 2)),
                                                                            (np.cos, np.arange(1, dim, 2)))]
    return np.concatenate(parts, axis=1).astype(np.float32)


def positions_table(g: Graph, cfg) -> str:
    """Sinusoids as in ``model.sinusoidal_positions`` (float64, sin half then cos half), computed by
    nodes that ONNX Runtime folds at load: 512 x D floats need not be stored."""
    if "positions" in g.memo:
        return g.memo["positions"]
    dim = cfg.d_model
    pos = g.op("Unsqueeze", g.op("Range", g.const(np.array(0.0)), g.const(np.array(float(cfg.max_positions))),
                                 g.const(np.array(1.0))), g.i64(1))  # (P, 1) float64
    parts = []
    for fn, js in (("Sin", np.arange(0, dim, 2)), ("Cos", np.arange(1, dim, 2))):
        denom = np.power(10000.0, 2 * (js // 2) / dim)  # (dim/2,) float64, the same for j = 2m and 2m+1
        parts.append(g.op(fn, g.op("Div", pos, g.const(denom))))
    table = g.op("Cast", g.op("Concat", *parts, axis=1), to=g.elem_type)  # (P, D)
    g.memo["positions"] = table
    return table


def embed(g: Graph, cfg, w: WeightSource, ids: str, start: str) -> str:
    """ids (B, T) -> shared[ids] * sqrt(D) + positions[start : start + T]."""
    h = g.op("Gather", w.matrix(g, "shared.weight", transpose=False), ids)  # (B, T, D)
    if cfg.scale_embedding:
        h = g.op("Mul", h, g.scalar(float(np.sqrt(cfg.d_model))))
    T = g.op("Shape", ids, start=1, end=2)
    table = w.positions(g, cfg) if hasattr(w, "positions") else positions_table(g, cfg)  # a source may hold it
    pos = g.op("Slice", table, start, g.op("Add", start, T), g.i64(0))  # (T, D)
    return g.op("Add", h, pos)


def linear(g: Graph, w: WeightSource, x: str, prefix: str) -> str:
    return g.op("Add", g.op("MatMul", x, w.matrix(g, f"{prefix}.weight", transpose=True)), w.vector(g, f"{prefix}.bias"))


def linears(g: Graph, cfg, w: WeightSource, x: str, prefixes: list[str]) -> list[str]:
    """Several d_model -> d_model projections of the same input (q, k, v) as ONE MatMul and a Split: fewer
    kernels per step, and int8 quantizes the input once. Each output column is the same dot product."""
    if hasattr(w, "stacked"):
        weight, bias = w.stacked(g, prefixes)
    else:  # constant Concat nodes: folded at load
        weight = g.op("Concat", *[w.matrix(g, f"{p}.weight", transpose=True) for p in prefixes], axis=1)
        bias = g.op("Concat", *[w.vector(g, f"{p}.bias") for p in prefixes], axis=0)
    y = g.op("Add", g.op("MatMul", x, weight), bias)
    return g.op("Split", y, g.i64(*[cfg.d_model] * len(prefixes)), axis=-1, n_out=len(prefixes)) if len(prefixes) > 1 else [y]


def layer_norm(g: Graph, cfg, w: WeightSource, x: str, prefix: str) -> str:
    return g.op("LayerNormalization", x, w.vector(g, f"{prefix}.weight"), w.vector(g, f"{prefix}.bias"),
                axis=-1, epsilon=cfg.layer_norm_eps)


def split_heads(g: Graph, cfg, x: str, step: bool = False) -> str:
    """(B, T, D) -> (B, H, T, Dh); in a decoder step x is (N, D) and T = 1, so no transpose is needed."""
    Dh = cfg.d_model // cfg.n_heads
    if step:
        return g.op("Reshape", x, g.i64(0, cfg.n_heads, 1, Dh))
    return g.op("Transpose", g.op("Reshape", x, g.i64(0, 0, cfg.n_heads, Dh)), perm=[0, 2, 1, 3])


def self_attention_qkv(g: Graph, cfg, w: WeightSource, x: str, prefix: str, step: bool = False) -> tuple[str, str, str]:
    """Projected q (not yet split into heads) and k, v split into heads (B, H, T, Dh)."""
    q, k, v = linears(g, cfg, w, x, [f"{prefix}.q_proj", f"{prefix}.k_proj", f"{prefix}.v_proj"])
    return q, split_heads(g, cfg, k, step), split_heads(g, cfg, v, step)


def attention(g: Graph, cfg, w: WeightSource, q: str, prefix: str, k: str, v: str, mask: str | None,
              step: bool = False, keep: list[str] | None = None) -> str:
    """q projected (B, Tq, D), or (N, D) in a decoder step; k, v (B, H, Tk, Dh); mask (B, 1, 1|Tq, Tk)
    bool, True = may attend, or None. ``keep`` collects the softmax (B, H, Tq, Tk) (attention maps)."""
    head_dim = cfg.d_model // cfg.n_heads
    q = g.op("Mul", split_heads(g, cfg, q, step), g.scalar(head_dim**-0.5))  # scaled after the bias, as in torch
    scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))  # (B, H, Tq, Tk)
    if mask is not None:
        scores = g.op("Where", mask, scores, g.scalar(float(np.finfo(g.dtype).min)))
    weights = g.op("Softmax", scores, axis=-1)
    if keep is not None:
        keep.append(weights)
    out = g.op("MatMul", weights, v)  # (B, H, Tq, Dh)
    if step:
        out = g.op("Reshape", out, g.i64(-1, cfg.d_model))  # (N, D)
    else:
        out = g.op("Reshape", g.op("Transpose", out, perm=[0, 2, 1, 3]), g.i64(0, 0, cfg.d_model))
    return linear(g, w, out, f"{prefix}.out_proj")


def ffn(g: Graph, cfg, w: WeightSource, x: str, prefix: str) -> str:
    h = linear(g, w, x, f"{prefix}.fc1")
    if cfg.activation == "relu":
        h = g.op("Relu", h)
    elif cfg.activation == "gelu":  # exact erf form, as torch's default
        h = g.op("Mul", g.op("Mul", h, g.scalar(0.5)),
                 g.op("Add", g.op("Erf", g.op("Mul", h, g.scalar(2**-0.5))), g.scalar(1.0)))
    elif cfg.activation in ("swish", "silu"):
        h = g.op("Mul", h, g.op("Sigmoid", h))
    else:
        raise ValueError(f"activation {cfg.activation!r} has no ONNX form here; add it to onnx_graphs.ffn")
    return linear(g, w, h, f"{prefix}.fc2")


def sublayer(g: Graph, cfg, w: WeightSource, h: str, norm: str, fn) -> str:
    if cfg.normalize_before:
        return g.op("Add", h, fn(layer_norm(g, cfg, w, h, norm)))
    return layer_norm(g, cfg, w, g.op("Add", h, fn(h)), norm)


def expand_rows(g: Graph, x: str, times: str, rank: int) -> str:
    """Repeat every row ``times`` times in place (torch.repeat_interleave on dim 0): beam search rows."""
    shape = g.op("Concat", g.i64(1), times, g.i64(*([1] * (rank - 1))), axis=0)
    x = g.op("Expand", g.op("Unsqueeze", x, g.i64(1)), shape)  # (B, K, ...)
    return g.op("Reshape", x, g.op("Concat", g.i64(-1), g.op("Shape", x, start=2), axis=0))


def encoder_stack(g: Graph, cfg, w: WeightSource, src: str, keep: list[str] | None = None) -> tuple[str, str]:
    """src ids (B, S) -> encoder output (B, S, D) and src mask (B, 1, 1, S); ``keep`` as in ``attention``."""
    mask = g.op("Unsqueeze", g.op("Not", g.op("Equal", src, g.i64(cfg.pad_id))), g.i64(1, 2))  # (B, 1, 1, S)
    h = embed(g, cfg, w, src, g.i64(0))
    for i in range(cfg.encoder_layers):
        p = f"encoder.layers.{i}"

        def self_attention(x: str, p: str = p) -> str:
            q, k, v = self_attention_qkv(g, cfg, w, x, f"{p}.self_attn")
            return attention(g, cfg, w, q, f"{p}.self_attn", k, v, mask, keep=keep)

        h = sublayer(g, cfg, w, h, f"{p}.self_attn_layer_norm", self_attention)
        h = sublayer(g, cfg, w, h, f"{p}.final_layer_norm", lambda x, p=p: ffn(g, cfg, w, x, p))
    if cfg.normalize_before:
        h = layer_norm(g, cfg, w, h, "encoder.layer_norm")
    return h, mask


# -- the two graphs -------------------------------------------------------------------------------
def build_encoder(cfg, w: WeightSource, float_dtype: Any = np.float32) -> onnx.ModelProto:
    g = Graph("tzip_encoder", float_dtype)
    H, Dh = cfg.n_heads, cfg.d_model // cfg.n_heads
    src = g.add_input("src_ids", TensorProto.INT64, ["batch", "src_len"])
    expand = g.add_input("expand", TensorProto.INT64, [])
    h, mask = encoder_stack(g, cfg, w, src)
    expand1 = g.op("Reshape", expand, g.i64(1))
    memory = expand_rows(g, h, expand1, 3)  # (B*K, S, D)
    g.add_output(expand_rows(g, mask, expand1, 4), "src_mask", TensorProto.BOOL, ["rows", 1, 1, "src_len"])
    # every decoder layer's cross-attention keys and values in one MatMul over the memory
    kv = linears(g, cfg, w, memory, [f"decoder.layers.{i}.encoder_attn.{p}_proj" for i in range(cfg.decoder_layers) for p in "kv"])
    for i in range(cfg.decoder_layers):
        for value, name in zip(kv[2 * i : 2 * i + 2], fmt.cross_names(i), strict=True):
            g.add_output(split_heads(g, cfg, value), name, g.elem_type, ["rows", H, "src_len", Dh])
    return g.to_model()


def build_decoder(cfg, w: WeightSource, float_dtype: Any = np.float32) -> onnx.ModelProto:
    g = Graph("tzip_decoder_step", float_dtype)
    H, Dh = cfg.n_heads, cfg.d_model // cfg.n_heads
    tokens = g.add_input("tokens", TensorProto.INT64, ["rows"])
    reorder = g.add_input("reorder", TensorProto.INT64, ["rows"])
    src_mask = g.add_input("src_mask", TensorProto.BOOL, ["rows", 1, 1, "src_len"])
    cross = [tuple(g.add_input(n, g.elem_type, ["rows", H, "src_len", Dh]) for n in fmt.cross_names(i))
             for i in range(cfg.decoder_layers)]
    past = [tuple(g.add_input(n, g.elem_type, ["rows", H, "past_len", Dh]) for n in fmt.past_names(i))
            for i in range(cfg.decoder_layers)]
    start = g.op("Shape", past[0][0], start=2, end=3)  # tokens decoded so far = this token's position
    h = embed(g, cfg, w, g.op("Unsqueeze", tokens, g.i64(1)), start)  # (N, 1, D)
    h = g.op("Reshape", h, g.i64(-1, cfg.d_model))  # (N, D): one position per row, linears become Gemm
    presents = []
    for i in range(cfg.decoder_layers):
        p = f"decoder.layers.{i}"

        def self_attention(x: str, i: int = i, p: str = p) -> str:
            q, k, v = self_attention_qkv(g, cfg, w, x, f"{p}.self_attn", step=True)  # k, v (N, H, 1, Dh)
            k = g.op("Concat", g.op("Gather", past[i][0], reorder, axis=0), k, axis=2)  # (N, H, P+1, Dh)
            v = g.op("Concat", g.op("Gather", past[i][1], reorder, axis=0), v, axis=2)
            presents.append((k, v))
            return attention(g, cfg, w, q, f"{p}.self_attn", k, v, None, step=True)  # one new query sees every key

        h = sublayer(g, cfg, w, h, f"{p}.self_attn_layer_norm", self_attention)
        h = sublayer(g, cfg, w, h, f"{p}.encoder_attn_layer_norm",
                     lambda x, i=i, p=p: attention(g, cfg, w, linear(g, w, x, f"{p}.encoder_attn.q_proj"),
                                                   f"{p}.encoder_attn", cross[i][0], cross[i][1], src_mask, step=True))
        h = sublayer(g, cfg, w, h, f"{p}.final_layer_norm", lambda x, p=p: ffn(g, cfg, w, x, p))
    if cfg.normalize_before:
        h = layer_norm(g, cfg, w, h, "decoder.layer_norm")
    logits = g.op("Add", g.op("MatMul", h, w.matrix(g, "shared.weight", transpose=True)),
                  w.vector(g, "final_logits_bias"))  # (N, V)
    if g.dtype != np.float32:
        logits = g.op("Cast", logits, to=TensorProto.FLOAT)
    g.add_output(g.op("LogSoftmax", logits, axis=-1), "log_probs", TensorProto.FLOAT, ["rows", cfg.vocab_size])
    for i, (k, v) in enumerate(presents):
        for value, name in zip((k, v), fmt.present_names(i), strict=True):
            g.add_output(value, name, g.elem_type, ["rows", H, "past_len_plus_1", Dh])
    return g.to_model()


# -- saving --------------------------------------------------------------------------------------
EXTERNAL_MIN_BYTES = 1024  # smaller tensors (shape constants, scalars) stay inside the .onnx files
ALIGN = 64


def save_models(models: dict[str, onnx.ModelProto], directory, weights_file: str = fmt.WEIGHTS_FILE) -> None:
    """Write each model as ``directory/<file name>``, all large initializers into one external-data file
    that every model points into; a tensor shared by several models (the tied embedding, which both
    the encoder and the decoder use) is stored once. Every model is then checked with onnx.checker."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stored: dict[tuple, tuple[int, int]] = {}  # (dtype, dims, raw bytes) -> (offset, length)
    with open(directory / weights_file, "wb") as blob:
        for model in models.values():
            for tensor in model.graph.initializer:
                raw = numpy_helper.to_array(tensor).tobytes() if not tensor.HasField("raw_data") else tensor.raw_data
                if len(raw) < EXTERNAL_MIN_BYTES:
                    continue
                key = (tensor.data_type, tuple(tensor.dims), raw)
                if key not in stored:
                    blob.write(b"\0" * (-blob.tell() % ALIGN))
                    stored[key] = (blob.tell(), len(raw))
                    blob.write(raw)
                offset, length = stored[key]
                for field in ("float_data", "int32_data", "int64_data", "double_data", "raw_data"):
                    tensor.ClearField(field)
                del tensor.external_data[:]
                tensor.data_location = TensorProto.EXTERNAL
                for k, v in (("location", weights_file), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = k, v
    for name, model in models.items():
        onnx.save(model, str(directory / name))
        onnx.checker.check_model(str(directory / name), full_check=True)
