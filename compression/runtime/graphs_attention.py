"""The attention graph of an export: every attention map of a teacher-forced pass (no torch).

``attention.onnx`` sits beside ``encoder.onnx`` and ``decoder.onnx`` and takes its weights from the same
``WeightSource`` (dense initializers, or compact codes decoded by graph nodes), built with the same
helpers of ``onnx_graphs``; ``save_models`` stores each tensor once, so the graph adds nodes to the
export but no weights. It runs the whole target at once (no cache): inputs are the source ids and the
decoder's input ids (decoder start token, then the translation), outputs every softmax, stacked over layers:

    src_ids (B, S) int64, tgt_ids (B, T) int64
    -> encoder_self (Le, B, H, S, S), decoder_self (Ld, B, H, T, T), cross (Ld, B, H, T, S)   float32

The arithmetic mirrors ``compression.train.model`` (and so ``Attention.last_weights``): pad keys of the source
are masked, decoder self-attention is causal. Pad rows of a padded target are computed but meaningless.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from compression.runtime import onnx_format as fmt
from compression.runtime.graphs import (
    Graph,
    WeightSource,
    attention,
    embed,
    encoder_stack,
    ffn,
    linear,
    linears,
    self_attention_qkv,
    split_heads,
    sublayer,
)


def causal_mask(g: Graph, ids: str) -> str:
    """(1, 1, T, T) bool: query i may see keys 0..i (``torch.ones(T, T).tril()``)."""
    T = g.op("Squeeze", g.op("Shape", ids, start=1, end=2), g.i64(0))
    pos = g.op("Range", g.const(np.array(0, np.int64)), T, g.const(np.array(1, np.int64)))  # (T,)
    mask = g.op("LessOrEqual", g.op("Unsqueeze", pos, g.i64(0)), g.op("Unsqueeze", pos, g.i64(1)))  # key j <= query i
    return g.op("Unsqueeze", mask, g.i64(0, 1))


def stack_output(g: Graph, maps: list[str], name: str, shape: list) -> None:
    stacked = g.op("Concat", *[g.op("Unsqueeze", m, g.i64(0)) for m in maps], axis=0)
    if g.dtype != np.float32:
        stacked = g.op("Cast", stacked, to=TensorProto.FLOAT)
    g.add_output(stacked, name, TensorProto.FLOAT, shape)


def build_attention(cfg, w: WeightSource, float_dtype: Any = np.float32) -> onnx.ModelProto:
    g = Graph("tzip_attention", float_dtype)
    src = g.add_input(fmt.ATTENTION_INPUTS[0], TensorProto.INT64, ["batch", "src_len"])
    tgt = g.add_input(fmt.ATTENTION_INPUTS[1], TensorProto.INT64, ["batch", "tgt_len"])
    enc_maps: list[str] = []
    dec_maps: list[str] = []
    cross_maps: list[str] = []

    h, src_mask = encoder_stack(g, cfg, w, src, keep=enc_maps)
    # cross keys/values of every layer in one MatMul, as the encoder graph does: the same stacked initializer
    kv = linears(g, cfg, w, h, [f"decoder.layers.{i}.encoder_attn.{p}_proj" for i in range(cfg.decoder_layers) for p in "kv"])

    self_mask = causal_mask(g, tgt)
    h = embed(g, cfg, w, tgt, g.i64(0))
    for i in range(cfg.decoder_layers):
        p = f"decoder.layers.{i}"

        def dec_self(x: str, p: str = p) -> str:
            q, k, v = self_attention_qkv(g, cfg, w, x, f"{p}.self_attn")
            return attention(g, cfg, w, q, f"{p}.self_attn", k, v, self_mask, keep=dec_maps)

        def cross(x: str, i: int = i, p: str = p) -> str:
            q = linear(g, w, x, f"{p}.encoder_attn.q_proj")
            k, v = (split_heads(g, cfg, kv[2 * i + j]) for j in (0, 1))
            return attention(g, cfg, w, q, f"{p}.encoder_attn", k, v, src_mask, keep=cross_maps)

        h = sublayer(g, cfg, w, h, f"{p}.self_attn_layer_norm", dec_self)
        h = sublayer(g, cfg, w, h, f"{p}.encoder_attn_layer_norm", cross)
        if i < cfg.decoder_layers - 1:  # the last layer's feed-forward feeds only the logits, not wanted here
            h = sublayer(g, cfg, w, h, f"{p}.final_layer_norm", lambda x, p=p: ffn(g, cfg, w, x, p))

    H = cfg.n_heads
    enc_name, dec_name, cross_name = fmt.ATTENTION_OUTPUTS
    stack_output(g, enc_maps, enc_name, [cfg.encoder_layers, "batch", H, "src_len", "src_len"])
    stack_output(g, dec_maps, dec_name, [cfg.decoder_layers, "batch", H, "tgt_len", "tgt_len"])
    stack_output(g, cross_maps, cross_name, [cfg.decoder_layers, "batch", H, "tgt_len", "src_len"])
    return g.to_model()
