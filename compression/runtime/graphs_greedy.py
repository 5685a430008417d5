"""The whole greedy decode as one ONNX graph: ONNX ``Loop``s over the exported decoder step, no ``If``.

``compression.runtime.translator`` drives the one-step decoder graph from Python: one ``session.run`` per token,
plus the NumPy search, cache bookkeeping and row selection around it. At batch 1 on a CPU that
overhead costs more than the kernels. Here the loop runs inside ONNX Runtime: tokens, finished
flags and the KV cache are loop-carried values that never leave the session, and a batch costs one
``run`` whatever its length.

The graph is assembled from an exported variant's own ``decoder.onnx`` (any
precision or storage: fp32, fp16, int8, compact weights), so it computes exactly
the same step. The step reproduces ``compression.runtime.search.greedy`` rule for rule:

    nxt      = argmax(logits)             (ArgMax: the first index on ties, as NumPy; on the logits, not the
                                           log-probs: LogSoftmax subtracts one number per row, argmax is the same)
    nxt      = eos where finished
    finished = finished | nxt == eos | t + 1 >= limits      (limits: (B,) int64, one per sentence)
    stop when every row has finished, or after max(limits) steps

Finished rows leave the batch by ``runtime.OrtStepper``'s rule (rows whose last token is not EOS, once
they are <= 3/4 of the rows held), so every step computes the same rows as the step-wise runtime. That
rule is the structure of the graph, two nested Loops, so no step pays for an ``If``:

    outer Loop, one iteration per "phase":  keep = rows whose last token is not EOS;  Gather them
        inner Loop, one iteration per token: the step above, until every row has finished or the
                                             next step would shrink (live * 4 <= held * 3)

(an ``If`` per step, whose keep-all branch copies the cache and encoder outputs through ``Identity``,
cost ~20% of a step at batch 32). A batch of one never shrinks: ``build_greedy(shrink=False)`` is the
inner Loop alone.

Inputs: the encoder's outputs and ``limits`` (B,) int64; output ``tokens`` (B, T) int64, T <= max(limits),
EOS after each sentence's end (strip at the first EOS, as ``search.greedy`` does). The decoder's
``reorder`` Gathers (beam search) are dropped: greedy never moves rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.runtime import onnx_format as fmt

GREEDY_OUTPUT = "tokens"
STEP = "step/"  # names inside the token loop's body: ONNX forbids shadowing an outer-scope name
PHASE = "phase/"  # ... and inside the phase loop's body
OUTER = "g/"  # the top-level graph's own values


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


def _logits(graph: onnx.GraphProto) -> str:
    """Drop the ``LogSoftmax`` that makes ``log_probs``; returns the name of its input (the logits)."""
    node = next((n for n in graph.node if "log_probs" in n.output), None)
    if node is None or node.op_type != "LogSoftmax":
        raise ValueError("the decoder's log_probs do not come from a LogSoftmax; this exporter's decoder is not the one "
                         "graphs_greedy knows")
    graph.node.remove(node)
    return node.input[0]


def _elem(spec: fmt.GraphSpec) -> int:
    return TensorProto.FLOAT16 if spec.float_dtype == "float16" else TensorProto.FLOAT


def _fixed_names(spec: fmt.GraphSpec) -> list[str]:
    """Per-row values a step reads but never changes: the encoder's outputs (and the limits)."""
    return ["limits", "src_mask", *[n for i in range(spec.decoder_layers) for n in fmt.cross_names(i)]]


def _past(spec: fmt.GraphSpec) -> list[str]:
    return [n for i in range(spec.decoder_layers) for n in fmt.past_names(i)]


def _consts(prefix: str, spec: fmt.GraphSpec) -> tuple[list[onnx.TensorProto], dict[str, str]]:
    values = {"eos": np.array(spec.eos_id, dtype=np.int64), "one": np.array(1, dtype=np.int64),
              "three": np.array(3, dtype=np.int64), "four": np.array(4, dtype=np.int64),
              "minus_one": np.array([-1], dtype=np.int64)}
    return [numpy_helper.from_array(v, prefix + k) for k, v in values.items()], {k: prefix + k for k in values}


def _any_left(finished: str, out: str, prefix: str) -> list[onnx.NodeProto]:
    """out = any(!finished), a bool scalar."""
    return [helper.make_node("Not", [finished], [f"{prefix}unfinished"]),
            helper.make_node("Cast", [f"{prefix}unfinished"], [f"{prefix}unfinished64"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", [f"{prefix}unfinished64"], [f"{prefix}any_left"], keepdims=0),
            helper.make_node("Cast", [f"{prefix}any_left"], [out], to=TensorProto.BOOL)]


def copy_step(decoder: onnx.GraphProto, rename: dict[str, str], prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The decoder step's nodes and initializers, copied for a loop body: every value named ``rename[name]``, or
    ``prefix + name`` (ONNX forbids a body to shadow an outer-scope name); node names get ``prefix`` too."""

    def name(v: str) -> str:
        return v if v == "" else rename.get(v, prefix + v)

    nodes, inits = [], []
    for node in decoder.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = prefix + node.name
        new.input[:] = [name(v) for v in node.input]
        new.output[:] = [name(v) for v in node.output]
        nodes.append(new)
    for t in decoder.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(t)
        new.name = name(t.name)
        inits.append(new)
    return nodes, inits


def _step_body(decoder: onnx.GraphProto, spec: fmt.GraphSpec, fixed: dict[str, str], rowmap: str | None,
               outer: tuple[str, ...] = ()) -> onnx.GraphProto:
    """The token loop's body: one decoder step, then greedy's argmax / EOS / limit rules.

    Carried: t (int64 scalar, the step), last (N,), finished (N,), the cache. ``fixed`` names the enclosing
    scope's per-row values (limits, src_mask, cross_*). With ``rowmap`` (the original row of each row
    computed) the loop also stops before a step that would shrink the batch, and each step's tokens are
    scattered to the original rows (EOS for rows no longer held)."""
    _drop_reorder(decoder)
    logits = _logits(decoder)
    inits, c = _consts(STEP, spec)
    present = [n for i in range(spec.decoder_layers) for n in fmt.present_names(i)]
    rename = {"tokens": "h/last", **fixed, **{p: f"h/{p}" for p in _past(spec)}, **{p: f"out/{p}" for p in present},
              **{n: n for n in outer}}  # values the top-level graph holds: read from the outer scope

    nodes, copied = copy_step(decoder, rename, STEP)
    inits += copied
    nodes += [
        helper.make_node("ArgMax", [rename.get(logits, STEP + logits)], ["s/argmax"], axis=-1, keepdims=0),  # (N,) int64
        helper.make_node("Where", ["h/finished", c["eos"], "s/argmax"], ["out/last"]),
        helper.make_node("Add", ["h/t", c["one"]], ["out/t"]),
        helper.make_node("GreaterOrEqual", ["out/t", fixed["limits"]], ["s/at_limit"]),
        helper.make_node("Equal", ["out/last", c["eos"]], ["s/is_eos"]),
        helper.make_node("Or", ["s/is_eos", "s/at_limit"], ["s/ends"]),
        helper.make_node("Or", ["h/finished", "s/ends"], ["out/finished"]),
    ]
    if rowmap is None:
        nodes += _any_left("out/finished", "cond_out", "s/")
        nodes.append(helper.make_node("Identity", ["out/last"], ["token"]))
    else:
        nodes += _any_left("out/finished", "s/go_on", "s/")
        nodes += [  # the next step would shrink the batch: leave this loop, the phase loop drops the rows
            helper.make_node("Not", ["s/is_eos"], ["s/live"]),
            helper.make_node("Cast", ["s/live"], ["s/live64"], to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["s/live64"], ["s/n_live"], keepdims=0),
            helper.make_node("Size", ["out/last"], ["s/n_held"]),
            helper.make_node("Mul", ["s/n_live", c["four"]], ["s/live4"]),
            helper.make_node("Mul", ["s/n_held", c["three"]], ["s/held3"]),
            helper.make_node("Greater", ["s/live4", "s/held3"], ["s/keep_rows"]),  # not live <= 0.75 * held, exactly
            helper.make_node("And", ["s/go_on", "s/keep_rows"], ["cond_out"]),
            helper.make_node("ScatterElements", [f"{OUTER}eos_rows", rowmap, "out/last"], ["token"], axis=0),
        ]
    elem = _elem(spec)
    carried = [("t", TensorProto.INT64), ("last", TensorProto.INT64), ("finished", TensorProto.BOOL),
               *[(p, elem) for p in _past(spec)]]
    out_name = {"t": "out/t", "last": "out/last", "finished": "out/finished",
                **{p: f"out/{q}" for p, q in zip(_past(spec), present, strict=True)}}
    inputs = [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(f"h/{n}", e, None) for n, e in carried]
    outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])]
    outputs += [helper.make_tensor_value_info(out_name[n], e, None) for n, e in carried]
    outputs.append(helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]))
    return helper.make_graph(nodes, "greedy_step", inputs, outputs, inits)


def _phase_body(decoder: onnx.GraphProto, spec: fmt.GraphSpec, outer: tuple[str, ...] = ()) -> onnx.GraphProto:
    """The phase loop's body: keep the rows still decoding (Gather), then the token loop until every row
    has finished or the next step would shrink; its tokens are appended to the carried (T, B) tokens."""
    P = PHASE
    elem = _elem(spec)
    rows = [("last", TensorProto.INT64), ("finished", TensorProto.BOOL), ("rowmap", TensorProto.INT64),
            ("limits", TensorProto.INT64), ("src_mask", TensorProto.BOOL),
            *[(n, elem) for i in range(spec.decoder_layers) for n in fmt.cross_names(i)], *[(p, elem) for p in _past(spec)]]
    inits, c = _consts(P, spec)
    nodes = [
        helper.make_node("Equal", [f"{P}in/last", c["eos"]], [f"{P}last_eos"]),
        helper.make_node("Not", [f"{P}last_eos"], [f"{P}live"]),
        helper.make_node("NonZero", [f"{P}live"], [f"{P}keep2"]),
        helper.make_node("Reshape", [f"{P}keep2", c["minus_one"]], [f"{P}keep"]),
    ]
    nodes += [helper.make_node("Gather", [f"{P}in/{n}", f"{P}keep"], [f"{P}{n}"], axis=0) for n, _ in rows]
    nodes.append(helper.make_node("Sub", [f"{OUTER}steps", f"{P}in/t"], [f"{P}remaining"]))
    step = _step_body(decoder, spec, {n: f"{P}{n}" for n in _fixed_names(spec)}, rowmap=f"{P}rowmap", outer=outer)
    carried = ["t", "last", "finished", *_past(spec)]
    loop_in = [f"{P}in/t" if n == "t" else f"{P}{n}" for n in carried]
    nodes.append(helper.make_node("Loop", [f"{P}remaining", f"{OUTER}true", *loop_in],
                                  [f"{P}out/{n}" for n in carried] + [f"{P}scan"], body=step))
    nodes.append(helper.make_node("Concat", [f"{P}in/tokens", f"{P}scan"], [f"{P}out/tokens"], axis=0))
    nodes += _any_left(f"{P}out/finished", f"{P}cond_out", P)
    state = ["t", *[n for n, _ in rows], "tokens"]
    types = {"t": TensorProto.INT64, "tokens": TensorProto.INT64, **dict(rows)}
    out = {n: f"{P}out/{n}" if n in carried or n == "tokens" else f"{P}{n}" for n in state}
    inputs = [helper.make_tensor_value_info(f"{P}iter", TensorProto.INT64, []),
              helper.make_tensor_value_info(f"{P}cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(f"{P}in/{n}", types[n], None) for n in state]
    outputs = [helper.make_tensor_value_info(f"{P}cond_out", TensorProto.BOOL, [])]
    outputs += [helper.make_tensor_value_info(out[n], types[n], None) for n in state]
    return helper.make_graph(nodes, "greedy_phase", inputs, outputs, inits)


def build_greedy(directory: Path | str, shrink: bool = True) -> onnx.ModelProto:
    """The greedy-decode graph of the exported variant in ``directory`` (in memory; not written).

    ``shrink``: drop finished rows as the step-wise runtime does (batches; the phase loop around the token
    loop); a batch of one never shrinks and needs only the token loop.

    Inputs: the exported encoder's outputs (``src_mask``, ``cross_k_i``, ``cross_v_i``: run that
    encoder as its own session; merged into this graph ONNX Runtime fuses its Add + LayerNorm
    differently, enough to move int8 tokens) and ``limits`` (B,) int64. Output: ``tokens`` (B, T)."""
    directory = Path(directory)
    return greedy_model(_load(directory, fmt.DECODER_FILE), fmt.GraphSpec.load(directory), shrink)


def hoist_weights(decoder_model: onnx.ModelProto, fed: tuple[str, ...]) -> tuple[list[onnx.ValueInfoProto],
                                                                                 list[onnx.TensorProto]]:
    """Take out of a decoder step built in memory (``graphs_int8.build_runtime_graphs``) the weights it reads
    that the runtime supplies: the graph inputs in ``fed`` and every initializer. The Loop graph declares
    them at its top level, where both loop bodies read them, so a session holds each once."""
    graph = decoder_model.graph
    inputs = [v for v in graph.input if v.name in fed]
    kept = [v for v in graph.input if v.name not in fed]
    del graph.input[:]
    graph.input.extend(kept)
    inits = list(graph.initializer)
    del graph.initializer[:]
    return inputs, inits


def greedy_model(decoder_model: onnx.ModelProto, spec: fmt.GraphSpec, shrink: bool = True,
                 fed: tuple[str, ...] | None = None) -> onnx.ModelProto:
    """``build_greedy`` over a decoder step ModelProto. With ``fed`` (a step built in memory), the weights are
    hoisted to the top level (``hoist_weights``): the ``fed`` ones become inputs of the Loop graph (bind them
    to every run), the declared initializers stay declared (hand them to the session)."""
    outer_inputs: list[onnx.ValueInfoProto] = []
    outer_inits: list[onnx.TensorProto] = []
    if fed is not None:
        outer_inputs, outer_inits = hoist_weights(decoder_model, fed)
    outer = tuple(v.name for v in outer_inputs) + tuple(t.name for t in outer_inits)
    decoder = decoder_model.graph
    L, G = spec.decoder_layers, OUTER
    elem = _elem(spec)
    inits: list[onnx.TensorProto] = []

    def const(value, label: str) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), G + label))
        return G + label

    nodes = [
        helper.make_node("Shape", ["limits"], [f"{G}rows"]),  # (1,) = B
        helper.make_node("Squeeze", [f"{G}rows"], [f"{G}n"]),
        helper.make_node("Expand", [const(np.array([spec.decoder_start_id], dtype=np.int64), "start"), f"{G}rows"], [f"{G}last0"]),
        helper.make_node("Expand", [const(np.array([False]), "false"), f"{G}rows"], [f"{G}finished0"]),
        helper.make_node("Expand", [const(np.array([spec.eos_id], dtype=np.int64), "eos"), f"{G}rows"], [f"{G}eos_rows"]),
        helper.make_node("Range", [const(np.array(0, dtype=np.int64), "zero"), f"{G}n", const(np.array(1, dtype=np.int64), "one")],
                         [f"{G}rowmap0"]),
        helper.make_node("Concat", [f"{G}rows", const(np.array([spec.n_heads, 0, spec.head_dim], dtype=np.int64), "hpd")],
                         [f"{G}empty_shape"], axis=0),
        helper.make_node("ConstantOfShape", [f"{G}empty_shape"], [f"{G}empty"],  # the zero-length cache (B, H, 0, Dh)
                         value=numpy_helper.from_array(np.zeros(1, dtype=spec.float_dtype))),
        helper.make_node("ReduceMax", ["limits"], [f"{G}steps"], keepdims=0),
    ]
    const(np.array(True), "true")
    t0 = const(np.array(0, dtype=np.int64), "t0")
    past0 = [f"{G}empty"] * (2 * L)
    if shrink:
        nodes.append(helper.make_node("Concat", [const(np.array([0], dtype=np.int64), "zero1"), f"{G}rows"], [f"{G}tokens_shape"], axis=0))
        nodes.append(helper.make_node("ConstantOfShape", [f"{G}tokens_shape"], [f"{G}tokens0"],  # (0, B)
                                      value=numpy_helper.from_array(np.zeros(1, dtype=np.int64))))
        state0 = [t0, f"{G}last0", f"{G}finished0", f"{G}rowmap0", *_fixed_names(spec), *past0, f"{G}tokens0"]
        n_state = len(state0)
        nodes.append(helper.make_node("Loop", [f"{G}steps", f"{G}true", *state0],
                                      [f"{G}end{j}" for j in range(n_state - 1)] + [f"{G}scan"],
                                      body=_phase_body(decoder, spec, outer)))
    else:
        step = _step_body(decoder, spec, {n: n for n in _fixed_names(spec)}, rowmap=None, outer=outer)
        state0 = [t0, f"{G}last0", f"{G}finished0", *past0]
        nodes.append(helper.make_node("Loop", [f"{G}steps", f"{G}true", *state0],
                                      [f"{G}end{j}" for j in range(len(state0))] + [f"{G}scan"], body=step))
    nodes.append(helper.make_node("Transpose", [f"{G}scan"], [GREEDY_OUTPUT], perm=[1, 0]))
    inputs = [helper.make_tensor_value_info("limits", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("src_mask", TensorProto.BOOL, ["batch", 1, 1, "src_len"])]
    inputs += [helper.make_tensor_value_info(n, elem, ["batch", spec.n_heads, "src_len", spec.head_dim])
               for i in range(L) for n in fmt.cross_names(i)]
    graph = helper.make_graph(nodes, "tzip_greedy", inputs + outer_inputs,
                              [helper.make_tensor_value_info(GREEDY_OUTPUT, TensorProto.INT64, ["batch", "steps"])],
                              inits + outer_inits)
    model = helper.make_model(graph, opset_imports=list(decoder_model.opset_import), producer_name="tzip")
    model.ir_version = 9
    return model

