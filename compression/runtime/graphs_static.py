"""One greedy decoder step with static shapes, for CUDA graphs: every tensor keeps its size from step to step.

``compression.runtime.graphs_greedy`` runs the whole decode in an ONNX ``Loop``; under CUDA that Loop is driven
from the host, ~100 kernel launches per token, so a small model is launch-bound (~0.6 ms per token on an H200
for a few microseconds of arithmetic). A CUDA graph replays all of a step's kernels with one launch, but only
if nothing changes shape or address between replays. This graph is the exported ``decoder.onnx`` step
rewritten so that nothing does:

- the KV cache is a fixed (B, H, T, Dh) buffer: the new key/value is written at position ``pos`` (``Where``
  over a one-hot of the T positions) instead of appended (``Concat``), and self-attention masks the positions
  after ``pos`` (the same ``Where`` to the dtype's minimum as the source mask: their softmax weights are 0);
- the position comes from the ``pos`` input (``Gather`` of the sinusoid table), not from the cache's shape;
- greedy's rules run in the graph, as in ``graphs_greedy``: ``nxt = argmax(logits)`` (on the logits as they
  are, fp16 included: no cast in the loop), EOS for finished rows, ``finished |= nxt == eos | pos + 1 >= limits``,
  and ``nxt`` is written into column ``pos`` of a (B, T) ``history``.

Every carried value is an input and the matching output (``CARRIED``): the runtime binds two sets of
buffers and alternates them (step t reads set t % 2 and writes the other), so each of the two captured
CUDA graphs always sees the same addresses (``compression.runtime.static_greedy``). Rows do not leave the
batch: a finished row keeps computing EOS, which costs nothing extra on a GPU (the graph is launch-bound).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.runtime import onnx_format as fmt
from compression.runtime.graphs_greedy import _drop_reorder, _elem

PREFIX = "static/"
# carried input -> the output that feeds it at the next step
CARRIED_FIXED = {"tokens": "next_tokens", "pos": "next_pos", "finished": "next_finished", "history": "next_history"}


def carried(spec: fmt.GraphSpec) -> dict[str, str]:
    """Every value a step reads and rewrites: input name -> output name."""
    cache = {p: q for i in range(spec.decoder_layers)
             for p, q in zip(fmt.past_names(i), fmt.present_names(i), strict=True)}
    return {**CARRIED_FIXED, **cache}


def _producer(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes (and initializers) nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _fail(what: str) -> ValueError:
    return ValueError(f"{what}: this decoder.onnx is not the one graphs_static knows; re-export it with "
                      "`python -m compression export`")


def build_static_step(decoder_model: onnx.ModelProto, spec: fmt.GraphSpec) -> onnx.ModelProto:
    """The static-shape greedy step of an exported decoder (graph files with dense or compact weights; a
    copy: ``decoder_model`` is not changed).

    Inputs: tokens (B,) int64 (each row's last token), pos (1,) int64 (the step), steps (T,) int64 (0..T-1),
    limits (B,) int64, finished (B,) bool, history (B, T) int64, src_mask, cross_k_i / cross_v_i (as from the
    encoder), past_k_i / past_v_i (B, H, T, Dh). Outputs: next_tokens, next_pos, next_finished, next_history,
    present_k_i / present_v_i, each the shape of its input (``carried``)."""
    model = onnx.ModelProto()
    model.CopyFrom(decoder_model)
    graph = model.graph
    _drop_reorder(graph)
    elem = _elem(spec)
    dtype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    P = PREFIX
    prod = _producer(graph)

    # logits: the LogSoftmax's input, before the fp32 Cast of an fp16 graph (exact: argmax is the same)
    soft = next((n for n in graph.node if "log_probs" in n.output and n.op_type == "LogSoftmax"), None)
    if soft is None:
        raise _fail("log_probs do not come from a LogSoftmax")
    logits = soft.input[0]
    if logits in prod and prod[logits].op_type == "Cast":
        logits = prod[logits].input[0]
    graph.node.remove(soft)

    # the position: the step's own input, not the cache's length; the sinusoid row by Gather, not Slice
    shape_nodes = [n for n in graph.node if n.op_type == "Shape" and n.input[0] == fmt.past_names(0)[0]]
    if len(shape_nodes) != 1:
        raise _fail("no single Shape of past_k_0 (the position)")
    start = shape_nodes[0].output[0]
    slices = [n for n in graph.node if n.op_type == "Slice" and len(n.input) > 1 and n.input[1] == start]
    if len(slices) != 1:
        raise _fail("no single Slice of the position table")
    table = slices[0].input[0]
    slices[0].CopyFrom(helper.make_node("Gather", [table, "pos"], list(slices[0].output), name=P + "position", axis=0))

    inits = {
        P + "eos": np.array(spec.eos_id, dtype=np.int64), P + "one": np.array(1, dtype=np.int64),
        P + "col": np.array([1, -1], dtype=np.int64), P + "cache_axis": np.array([1, 1, -1, 1], dtype=np.int64),
        P + "key_axis": np.array([1, 1, 1, -1], dtype=np.int64), P + "min": np.array(np.finfo(dtype).min, dtype=dtype),
        P + "unsq": np.array([1], dtype=np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    new = [
        helper.make_node("Equal", ["steps", "pos"], [P + "here"]),  # (T,): the position written this step
        helper.make_node("Reshape", [P + "here", P + "cache_axis"], [P + "here_cache"]),  # (1, 1, T, 1)
        helper.make_node("GreaterOrEqual", ["pos", "steps"], [P + "seen"]),  # (T,): positions 0..pos
        helper.make_node("Reshape", [P + "seen", P + "key_axis"], [P + "seen_keys"]),  # (1, 1, 1, T)
    ]

    # the cache: write at pos instead of appending; self-attention masks the positions not written yet
    for i in range(spec.decoder_layers):
        for past, present in zip(fmt.past_names(i), fmt.present_names(i), strict=True):
            node = prod.get(present)
            if node is None or node.op_type != "Concat" or node.input[0] != past:
                raise _fail(f"{present} is not Concat({past}, new)")
            node.CopyFrom(helper.make_node("Where", [P + "here_cache", node.input[1], past], [present],
                                           name=P + f"write/{present}"))
        key = fmt.present_names(i)[0]
        softmaxes = []
        for n in graph.node:
            if n.op_type != "Softmax" or n.input[0] not in prod or prod[n.input[0]].op_type != "MatMul":
                continue
            rhs = prod.get(prod[n.input[0]].input[1])
            if rhs is not None and rhs.op_type == "Transpose" and rhs.input[0] == key:
                softmaxes.append(n)
        if len(softmaxes) != 1:
            raise _fail(f"no single self-attention softmax over {key}")
        masked = P + f"masked/{i}"
        new.append(helper.make_node("Where", [P + "seen_keys", softmaxes[0].input[0], P + "min"], [masked]))
        softmaxes[0].input[0] = masked

    # greedy's rules (compression.runtime.search.greedy), then the token into column pos of the history
    new += [
        helper.make_node("ArgMax", [logits], [P + "argmax"], axis=-1, keepdims=0),  # (B,) the first index on ties
        helper.make_node("Where", ["finished", P + "eos", P + "argmax"], ["next_tokens"]),
        helper.make_node("Add", ["pos", P + "one"], ["next_pos"]),
        helper.make_node("GreaterOrEqual", ["next_pos", "limits"], [P + "at_limit"]),
        helper.make_node("Equal", ["next_tokens", P + "eos"], [P + "is_eos"]),
        helper.make_node("Or", [P + "is_eos", P + "at_limit"], [P + "ends"]),
        helper.make_node("Or", ["finished", P + "ends"], ["next_finished"]),
        helper.make_node("Reshape", [P + "here", P + "col"], [P + "here_row"]),  # (1, T)
        helper.make_node("Unsqueeze", ["next_tokens", P + "unsq"], [P + "token_col"]),  # (B, 1)
        helper.make_node("Where", [P + "here_row", P + "token_col", "history"], ["next_history"]),
    ]
    graph.node.extend(new)

    H, Dh = spec.n_heads, spec.head_dim
    keep_inputs = [i for i in graph.input if i.name not in ("reorder", "tokens") and not i.name.startswith("past_")]
    del graph.input[:]
    graph.input.extend([
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("pos", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("steps", TensorProto.INT64, ["max_steps"]),
        helper.make_tensor_value_info("limits", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("finished", TensorProto.BOOL, ["batch"]),
        helper.make_tensor_value_info("history", TensorProto.INT64, ["batch", "max_steps"]),
        *keep_inputs,
        *[helper.make_tensor_value_info(n, elem, ["batch", H, "max_steps", Dh])
          for i in range(spec.decoder_layers) for n in fmt.past_names(i)],
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("next_tokens", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("next_pos", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("next_finished", TensorProto.BOOL, ["batch"]),
        helper.make_tensor_value_info("next_history", TensorProto.INT64, ["batch", "max_steps"]),
        *[helper.make_tensor_value_info(n, elem, ["batch", H, "max_steps", Dh])
          for i in range(spec.decoder_layers) for n in fmt.present_names(i)],
    ])
    del graph.value_info[:]
    _prune(graph)
    graph.name = "tzip_static_greedy_step"
    return model
