"""The whole greedy decode as one ONNX graph: an ONNX ``Loop`` over the exported decoder step.

``compression.runtime.translator`` drives the one-step decoder graph from Python: one ``session.run`` per token,
plus the NumPy search, cache bookkeeping and row selection around it. At batch 1 on a CPU that
overhead costs more than the kernels. Here the loop runs inside ONNX Runtime: tokens, finished
flags and the KV cache are loop-carried values that never leave the session, and a batch costs one
``run`` whatever its length.

The graph is assembled from an exported variant's own ``decoder.onnx`` (any
precision or storage: fp32, fp16, int8 dynamic quantization, compact weights), so it computes exactly
the same step. The loop body reproduces ``compression.runtime.search.greedy`` rule for rule:

    nxt      = argmax(log_probs)          (ArgMax: the first index on ties, as NumPy)
    nxt      = eos where finished
    finished = finished | nxt == eos | t + 1 >= limits      (limits: (B,) int64, one per sentence)
    stop when every row has finished, or after max(limits) steps

Inputs: the encoder's outputs and ``limits`` (B,) int64; output ``tokens`` (B, T) int64, T <= max(limits),
EOS after each sentence's end (strip at the first EOS, as ``search.greedy`` does). The decoder's
``reorder`` Gathers (beam search) are dropped: greedy never moves rows. Finished rows leave the batch
by ``runtime.OrtStepper``'s rule (``_shrink``), so every step computes the same rows as the step-wise
runtime: with int8's per-tensor dynamic quantization the rows in a batch change each other's scales,
so this is what makes int8 tokens identical too, not only fp32's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.runtime import onnx_format as fmt

GREEDY_OUTPUT = "tokens"
BODY_PREFIX = "step/"  # names inside the loop body: ONNX forbids shadowing an outer-scope name


def _load(directory: Path, name: str) -> onnx.ModelProto:
    return onnx.load(str(directory / name), load_external_data=True)


def _drop_reorder(graph: onnx.GraphProto) -> None:
    """Remove ``Gather(past, reorder)`` nodes in place; their consumers read ``past`` directly."""
    alias = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == "reorder":
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        if "reorder" in node.input:
            raise ValueError(f"decoder node {node.name} ({node.op_type}) uses 'reorder' other than to Gather the cache; "
                             "this exporter's decoder is not the one onnx_greedy knows")
        for j, v in enumerate(node.input):
            node.input[j] = alias.get(v, v)
    del graph.node[:]
    graph.node.extend(keep)


PASSED_ON = ("rowmap", "limits", "src_mask")  # + cross_*: carried unchanged unless the batch shrinks


def _row_tensors(spec: fmt.GraphSpec, shrink: bool) -> list[tuple[str, Any]]:
    """The loop-carried tensors, one row per decoding row: (name, element type). Without shrinking the
    encoder's outputs and the limits need not be carried: the body reads them from the outer graph."""
    elem = TensorProto.FLOAT16 if spec.float_dtype == "float16" else TensorProto.FLOAT
    L = spec.decoder_layers
    rows = [("last", TensorProto.INT64), ("finished", TensorProto.BOOL)]
    if shrink:
        rows += [("rowmap", TensorProto.INT64), ("limits", TensorProto.INT64), ("src_mask", TensorProto.BOOL)]
        rows += [(n, elem) for i in range(L) for n in fmt.cross_names(i)]
    return rows + [(n, elem) for i in range(L) for n in fmt.past_names(i)]


def _shrink(spec: fmt.GraphSpec, eos: str) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Nodes that keep the rows still decoding, by ``runtime.OrtStepper``'s rule (rows whose last token is
    not EOS, once they are <= 3/4 of the rows held), so the rows computed, and hence int8's dynamic
    quantization scales, are the step-wise runtime's. Returns the nodes and {carried name: kept name};
    what passes on unchanged is named as the body's output (no Identity copy after the If)."""
    rows = _row_tensors(spec, shrink=True)
    then_nodes, then_out, else_nodes, else_out = [], [], [], []
    for name, elem in rows:
        then_nodes.append(helper.make_node("Gather", [f"h/{name}", "g/keep"], [f"then/{name}"], axis=0))
        else_nodes.append(helper.make_node("Identity", [f"h/{name}"], [f"else/{name}"]))
        then_out.append(helper.make_tensor_value_info(f"then/{name}", elem, None))
        else_out.append(helper.make_tensor_value_info(f"else/{name}", elem, None))
    passed = {*PASSED_ON, *[n for i in range(spec.decoder_layers) for n in fmt.cross_names(i)]}
    kept = {name: f"out/{name}" if name in passed else f"s/{name}" for name, _ in rows}
    then_nodes.insert(0, helper.make_node("NonZero", ["g/live"], ["g/keep2"]))
    then_nodes.insert(1, helper.make_node("Reshape", ["g/keep2", f"{BODY_PREFIX}minus_one"], ["g/keep"]))
    nodes = [
        helper.make_node("Equal", ["h/last", eos], ["g/last_eos"]),
        helper.make_node("Not", ["g/last_eos"], ["g/live"]),
        helper.make_node("Cast", ["g/live"], ["g/live64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["g/live64"], ["g/n_live"], keepdims=0),
        helper.make_node("Size", ["h/last"], ["g/n_held"]),
        helper.make_node("Mul", ["g/n_live", f"{BODY_PREFIX}four"], ["g/live4"]),
        helper.make_node("Mul", ["g/n_held", f"{BODY_PREFIX}three"], ["g/held3"]),
        helper.make_node("LessOrEqual", ["g/live4", "g/held3"], ["g/shrink"]),  # live <= 0.75 * held, exactly
        helper.make_node("If", ["g/shrink"], [kept[name] for name, _ in rows],
                         then_branch=helper.make_graph(then_nodes, "keep_live", [], then_out),
                         else_branch=helper.make_graph(else_nodes, "keep_all", [], else_out)),
    ]
    return nodes, kept


def _body(decoder: onnx.GraphProto, spec: fmt.GraphSpec, shrink: bool) -> onnx.GraphProto:
    """The loop body: (drop finished rows,) one decoder step, then greedy's argmax / EOS / limit rules."""
    _drop_reorder(decoder)
    L = spec.decoder_layers
    present = [n for i in range(L) for n in fmt.present_names(i)]
    inits: list[onnx.TensorProto] = []

    def const(value, label: str) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), BODY_PREFIX + label))
        return BODY_PREFIX + label

    eos, one = const(np.array(spec.eos_id, dtype=np.int64), "eos"), const(np.array(1, dtype=np.int64), "one")
    const(np.array(3, dtype=np.int64), "three"), const(np.array(4, dtype=np.int64), "four")
    const(np.array([-1], dtype=np.int64), "minus_one")
    if shrink:
        nodes, kept = _shrink(spec, eos)
    else:  # the rows never change: the step reads the encoder's outputs and the limits from the outer graph
        nodes = []
        kept = {"last": "h/last", "finished": "h/finished", **{n: n for n in PASSED_ON[1:]},
                **{n: n for i in range(L) for n in fmt.cross_names(i)},
                **{n: f"h/{n}" for i in range(L) for n in fmt.past_names(i)}}
    rename = {"tokens": kept["last"], **kept, **{p: f"out/{p}" for p in present}}

    def name(v: str) -> str:
        return v if v == "" else rename.get(v, BODY_PREFIX + v)

    for node in decoder.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = BODY_PREFIX + node.name
        new.input[:] = [name(v) for v in node.input]
        new.output[:] = [name(v) for v in node.output]
        nodes.append(new)
    for t in decoder.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(t)
        new.name = name(t.name)
        inits.append(new)

    logp = name("log_probs")
    nodes += [
        helper.make_node("ArgMax", [logp], ["g/argmax"], axis=-1, keepdims=0),  # (N,) int64
        helper.make_node("Where", [kept["finished"], eos, "g/argmax"], ["out/last"]),
        helper.make_node("Add", ["t", one], ["g/t1"]),
        helper.make_node("GreaterOrEqual", ["g/t1", kept["limits"]], ["g/at_limit"]),
        helper.make_node("Equal", ["out/last", eos], ["g/is_eos"]),
        helper.make_node("Or", ["g/is_eos", "g/at_limit"], ["g/ends"]),
        helper.make_node("Or", [kept["finished"], "g/ends"], ["out/finished"]),
        helper.make_node("Not", ["out/finished"], ["g/unfinished"]),
        helper.make_node("Cast", ["g/unfinished"], ["g/unfinished64"], to=TensorProto.INT64),
        helper.make_node("ReduceMax", ["g/unfinished64"], ["g/any_left"], keepdims=0),
        helper.make_node("Cast", ["g/any_left"], ["cond_out"], to=TensorProto.BOOL),
    ]
    if shrink:  # this step's token of every sentence (EOS for rows no longer held), for the scan output (T, B)
        nodes.append(helper.make_node("ScatterElements", ["g/eos_rows", kept["rowmap"], "out/last"], ["token"], axis=0))
    else:
        nodes.append(helper.make_node("Identity", ["out/last"], ["token"]))
    rows = _row_tensors(spec, shrink)
    inputs = [helper.make_tensor_value_info("t", TensorProto.INT64, []),
              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(f"h/{n}", e, None) for n, e in rows]
    outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])]
    out_names = {**{n: f"out/{n}" for n, _ in rows}, **{p: f"out/{q}" for i in range(L)
                                                       for p, q in zip(fmt.past_names(i), fmt.present_names(i), strict=True)}}
    outputs += [helper.make_tensor_value_info(out_names[n], e, None) for n, e in rows]
    outputs.append(helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]))
    return helper.make_graph(nodes, "greedy_step", inputs, outputs, inits)


def build_greedy(directory: Path | str, shrink: bool = True) -> onnx.ModelProto:
    """The greedy-decode graph of the exported variant in ``directory`` (in memory; not written).

    ``shrink``: drop finished rows as the step-wise runtime does (batches); a batch of one never
    shrinks, and without the ``If`` a step costs about 10% less.

    Inputs: the exported encoder's outputs (``src_mask``, ``cross_k_i``, ``cross_v_i``: run that
    encoder as its own session; merged into this graph ONNX Runtime fuses its Add + LayerNorm
    differently, enough to move int8 tokens) and ``limits`` (B,) int64. Output: ``tokens`` (B, T)."""
    directory = Path(directory)
    spec = fmt.GraphSpec.load(directory)
    decoder = _load(directory, fmt.DECODER_FILE)
    body = _body(decoder.graph, spec, shrink)
    L = spec.decoder_layers
    elem = TensorProto.FLOAT16 if spec.float_dtype == "float16" else TensorProto.FLOAT
    inits: list[onnx.TensorProto] = []

    def const(value, label: str) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), f"g/{label}"))
        return f"g/{label}"

    nodes = [
        helper.make_node("Shape", ["limits"], ["g/rows"]),  # (1,) = B
        helper.make_node("Squeeze", ["g/rows"], ["g/n"]),
        helper.make_node("Expand", [const(np.array([spec.decoder_start_id], dtype=np.int64), "start"), "g/rows"], ["g/last0"]),
        helper.make_node("Expand", [const(np.array([False]), "false"), "g/rows"], ["g/finished0"]),
        helper.make_node("Expand", [const(np.array([spec.eos_id], dtype=np.int64), "eos"), "g/rows"], ["g/eos_rows"]),
        helper.make_node("Range", [const(np.array(0, dtype=np.int64), "zero"), "g/n", const(np.array(1, dtype=np.int64), "one")],
                         ["g/rowmap0"]),
        helper.make_node("Concat", ["g/rows", const(np.array([spec.n_heads, 0, spec.head_dim], dtype=np.int64), "hpd")],
                         ["g/empty_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["g/empty_shape"], ["g/empty"],  # the zero-length cache (B, H, 0, Dh)
                         value=numpy_helper.from_array(np.zeros(1, dtype=spec.float_dtype))),
        helper.make_node("ReduceMax", ["limits"], ["g/steps"], keepdims=0),
    ]
    initial = {"last": "g/last0", "finished": "g/finished0", "rowmap": "g/rowmap0",
               **{n: "g/empty" for i in range(L) for n in fmt.past_names(i)}}
    rows = [n for n, _ in _row_tensors(spec, shrink)]
    nodes.append(helper.make_node(
        "Loop", ["g/steps", const(np.array(True), "true")] + [initial.get(n, n) for n in rows],
        [f"g/{n}_end" for n in rows] + ["g/scan"], body=body))
    nodes.append(helper.make_node("Transpose", ["g/scan"], [GREEDY_OUTPUT], perm=[1, 0]))
    inputs = [helper.make_tensor_value_info("limits", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("src_mask", TensorProto.BOOL, ["batch", 1, 1, "src_len"])]
    inputs += [helper.make_tensor_value_info(n, elem, ["batch", spec.n_heads, "src_len", spec.head_dim])
               for i in range(L) for n in fmt.cross_names(i)]
    graph = helper.make_graph(nodes, "tzip_greedy", inputs,
                              [helper.make_tensor_value_info(GREEDY_OUTPUT, TensorProto.INT64, ["batch", "steps"])], inits)
    model = helper.make_model(graph, opset_imports=list(decoder.opset_import), producer_name="tzip")
    model.ir_version = 9
    return model
