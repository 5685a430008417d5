"""The whole beam search as one ONNX graph: a ``Loop`` over the exported decoder step, no ``If``, no Python per token.

``compression.runtime.search.beam_search`` is the reference; this graph reproduces it rule for rule, with
fixed-size tensors where the NumPy code keeps lists. Per sentence b (K beams, rows b*K .. b*K+K-1):

    candidates   each row's best W = min(2K, V) log-probs (TopK), added to its beam's score (float64, as
                 NumPy), then the sentence's best R = min(2K, K*W) of its K*W candidates, best first
    EOS          a finite candidate whose token is EOS and whose rank is < K finishes: its hypothesis (the
                 beam's tokens, without EOS) scores  s / (t + 1) ** length_penalty
    alive        the first K finite non-EOS candidates in rank order fill the beams; unfilled beams score -inf
                 (and carry EOS)
    done         K hypotheses finished, or no beam was filled; once done a sentence is ignored
    limit        a sentence not done whose next length reaches its limit: its finite beams finish too, each
                 scoring  s / (t + 1) ** length_penalty, and it is done
    result       the best-scoring finished hypothesis (the first on ties, as Python's ``max``), or none

``search.beam_search`` keeps every finished hypothesis and takes the best at the end; the graph keeps the
best so far (score and tokens): the same choice, since the best of a list is the best of its best prefix and
the rest. Hypotheses live in a (B*K, T) buffer of EOS in which step t writes column t, so nothing changes
shape in the loop.

Which rows a step computes: the step-wise runtime skips rows whose last token is EOS; here a phase Loop around
the token Loop keeps the sentences not done (all K rows of each) and the token Loop stops once a quarter of the
held sentences are done, so the next phase drops them. The row sets differ, the tokens do not: fp32 and int8
(per-row activation scales) compute each row on its own.

Inputs: the encoder's outputs for B*K rows (the encoder's ``expand`` = K), ``limits`` (B,) int64, ``beam`` ()
int64 and ``length_penalty`` () float64. Output: ``tokens`` (B, T) int64, each sentence's hypothesis followed
by EOS (strip at the first EOS), T = max(limits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compression.runtime import onnx_format as fmt
from compression.runtime.graphs_greedy import (
    GREEDY_OUTPUT,
    _any_left,
    _elem,
    _fixed_names,
    _load,
    _past,
    copy_step,
)

BEAM_OUTPUT = GREEDY_OUTPUT
STEP = "bstep/"  # the token loop body's copy of the decoder step
PHASE = "bphase/"  # the phase loop body's values
OUTER = "bg/"  # the top-level graph's own values
NEG_INF = -np.inf


class _Nodes:
    """Node list with a one-line ``op(...)`` helper; names get ``prefix`` unless they are given whole."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, value, label: str) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), self.prefix + label))
        return self.prefix + label

    def op(self, op_type: str, inputs: list[str], out: str | list[str], **attrs) -> str:
        outs = [out] if isinstance(out, str) else out
        outs = [o if "/" in o else self.prefix + o for o in outs]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0]


CARRIED = ("t", "last", "reorder", "scores", "done", "count", "best_score", "best_seq", "seqs")
_TYPES = {"t": TensorProto.INT64, "last": TensorProto.INT64, "reorder": TensorProto.INT64, "scores": TensorProto.DOUBLE,
          "done": TensorProto.BOOL, "count": TensorProto.INT64, "best_score": TensorProto.DOUBLE,
          "best_seq": TensorProto.INT64, "seqs": TensorProto.INT64}


def _body(decoder: onnx.GraphProto, spec: fmt.GraphSpec) -> onnx.GraphProto:
    """The token loop's body: one decoder step and one step of ``search.beam_search``, for the phase's held
    sentences. Reads the top graph's constants (``G``) and the phase's values (``P``: held rows, their encoder
    outputs and limits, shapes). Stops when every held sentence is done, or when so many are that the next
    step should not compute them (done * 4 >= held: the phase loop then drops them)."""
    G, P = OUTER, PHASE
    present = [n for i in range(spec.decoder_layers) for n in fmt.present_names(i)]
    rename = {"tokens": "h/last", "reorder": "h/reorder", **{n: f"{PHASE}{n}" for n in _fixed_names(spec)},
              **{p: f"h/{p}" for p in _past(spec)}, **{p: f"out/{p}" for p in present}, "log_probs": "s/log_probs"}
    nodes, inits = copy_step(decoder, rename, STEP)
    n = _Nodes("s/")
    inf = n.const(np.array(NEG_INF), "neg_inf")
    eos = n.const(np.array(spec.eos_id, dtype=np.int64), "eos")
    axis1 = n.const(np.array([1], dtype=np.int64), "axis1")
    # candidates: each row's best W, then each sentence's best R of K * W
    n.op("TopK", ["s/log_probs", f"{G}W1"], ["row_top", "row_ids"], axis=-1, largest=1, sorted=1)
    n.op("Cast", ["s/row_top"], "row_top64", to=TensorProto.DOUBLE)
    n.op("Reshape", ["s/row_top64", f"{P}BKW"], "row_top3")
    n.op("Reshape", ["h/scores", f"{P}BK1"], "scores3")
    n.op("Add", ["s/scores3", "s/row_top3"], "cand3")
    n.op("Reshape", ["s/cand3", f"{P}BKxW"], "cand")
    n.op("TopK", ["s/cand", f"{G}R1"], ["top_s", "top_i"], axis=1, largest=1, sorted=1)  # (B, R)
    n.op("Div", ["s/top_i", f"{G}W"], "src_beam")
    n.op("Reshape", ["s/row_ids", f"{P}BKxW"], "ids_flat")
    n.op("GatherElements", ["s/ids_flat", "s/top_i"], "tok", axis=1)
    n.op("Greater", ["s/top_s", inf], "finite")
    n.op("Equal", ["s/tok", eos], "is_eos")
    n.op("Not", ["h/done"], "live_b")
    n.op("Unsqueeze", ["s/live_b", axis1], "live2")  # (B, 1)
    # finished by EOS: rank < K, finite, sentence not done
    n.op("And", ["s/is_eos", "s/finite"], "eos_finite")
    n.op("And", [f"{G}rank_lt_k", "s/live2"], "eos_allowed")
    n.op("And", ["s/eos_finite", "s/eos_allowed"], "eos_fin")
    # alive: the first K finite non-EOS candidates, in rank order
    n.op("Not", ["s/is_eos"], "not_eos")
    n.op("And", ["s/not_eos", "s/finite"], "alive0")
    n.op("And", ["s/alive0", "s/live2"], "alive")
    n.op("Cast", ["s/alive"], "alive64", to=TensorProto.INT64)
    n.op("CumSum", ["s/alive64", n.const(np.array(1, dtype=np.int64), "axis1s")], "alive_cum")
    n.op("Greater", ["s/alive_cum", f"{G}K"], "past_k")
    n.op("Not", ["s/past_k"], "within_k")
    n.op("And", ["s/alive", "s/within_k"], "selected")
    n.op("Cast", ["s/selected"], "selected64", to=TensorProto.INT64)
    n.op("ReduceSum", ["s/selected64", axis1], "filled", keepdims=0)  # (B,)
    n.op("Add", [f"{G}rank", f"{G}R"], "rank_late")
    n.op("Where", ["s/selected", f"{G}rank", "s/rank_late"], "slot_key")  # selected first, in rank order
    n.op("TopK", ["s/slot_key", f"{G}K1"], ["slot_key_k", "slot"], axis=1, largest=0, sorted=1)  # (B, K)
    n.op("Unsqueeze", ["s/filled", axis1], "filled2")
    n.op("Less", [f"{G}slots", "s/filled2"], "slot_ok")
    n.op("GatherElements", ["s/top_s", "s/slot"], "slot_s", axis=1)
    n.op("Where", ["s/slot_ok", "s/slot_s", inf], "out/scores")
    n.op("GatherElements", ["s/src_beam", "s/slot"], "slot_beam", axis=1)
    n.op("Add", [f"{P}base_row", "s/slot_beam"], "new_rows")
    n.op("Reshape", ["s/new_rows", f"{P}N1"], "out/reorder")
    n.op("GatherElements", ["s/tok", "s/slot"], "slot_tok", axis=1)
    n.op("Where", ["s/slot_ok", "s/slot_tok", eos], "new_tok")
    n.op("Reshape", ["s/new_tok", f"{P}N1"], "out/last")
    # finished count and done
    n.op("Cast", ["s/eos_fin"], "eos_fin64", to=TensorProto.INT64)
    n.op("ReduceSum", ["s/eos_fin64", axis1], "n_eos", keepdims=0)
    n.op("Add", ["h/count", "s/n_eos"], "out/count")
    n.op("GreaterOrEqual", ["out/count", f"{G}K"], "enough")
    n.op("Equal", ["s/filled", n.const(np.array(0, dtype=np.int64), "zero")], "none_filled")
    n.op("Or", ["s/enough", "s/none_filled"], "ends")
    n.op("Or", ["h/done", "s/ends"], "done_now")
    # scores of this step's finished hypotheses: s / (t + 1) ** length_penalty
    n.op("Add", ["h/t", n.const(np.array(1, dtype=np.int64), "one")], "out/t")
    n.op("Cast", ["out/t"], "t1d", to=TensorProto.DOUBLE)
    n.op("Pow", ["s/t1d", "length_penalty"], "denom")
    n.op("Div", ["s/top_s", "s/denom"], "eos_norm0")
    n.op("Where", ["s/eos_fin", "s/eos_norm0", inf], "eos_norm")
    # hypotheses: the reordered beams, this step's token written at column t
    n.op("Gather", ["h/seqs", "out/reorder"], "moved", axis=0)
    n.op("Equal", [f"{G}cols", "h/t"], "col_t")
    n.op("Unsqueeze", ["out/last", axis1], "last2")
    n.op("Where", ["s/col_t", "s/last2", "s/moved"], "out/seqs")
    # out of length: a sentence not done reaching its limit finishes its finite beams
    n.op("GreaterOrEqual", ["out/t", f"{P}limits"], "at_limit0")
    n.op("Not", ["s/done_now"], "still")
    n.op("And", ["s/still", "s/at_limit0"], "at_limit")
    n.op("Unsqueeze", ["s/at_limit", axis1], "at_limit2")
    n.op("Greater", ["out/scores", inf], "beam_finite")
    n.op("And", ["s/beam_finite", "s/at_limit2"], "lim_fin")
    n.op("Div", ["out/scores", "s/denom"], "lim_norm0")
    n.op("Where", ["s/lim_fin", "s/lim_norm0", inf], "lim_norm")
    n.op("Or", ["s/done_now", "s/at_limit"], "out/done")
    # the best of this step's finished hypotheses (EOS ones in rank order, then the limit ones), if it beats the best
    n.op("Concat", ["s/eos_norm", "s/lim_norm"], "pool", axis=1)  # (B, R + K)
    n.op("ArgMax", ["s/pool"], "pick", axis=1, keepdims=1)  # the first maximum, as max() over a list
    n.op("GatherElements", ["s/pool", "s/pick"], "pick_s2", axis=1)
    n.op("Squeeze", ["s/pick_s2", axis1], "pick_s")
    n.op("Greater", ["s/pick_s", "h/best_score"], "better")
    n.op("Where", ["s/better", "s/pick_s", "h/best_score"], "out/best_score")
    n.op("Less", ["s/pick", f"{G}R"], "pick_eos")
    n.op("Min", ["s/pick", f"{G}R_1"], "pick_e")
    n.op("GatherElements", ["s/src_beam", "s/pick_e"], "pick_beam", axis=1)
    n.op("Add", [f"{P}base_row", "s/pick_beam"], "row_e2")
    n.op("Sub", ["s/pick", f"{G}R"], "pick_l0")
    n.op("Max", ["s/pick_l0", n.const(np.array(0, dtype=np.int64), "zero_l")], "pick_l")
    n.op("Add", [f"{P}base_row", "s/pick_l"], "row_l2")
    n.op("Squeeze", ["s/row_e2", axis1], "row_e")
    n.op("Squeeze", ["s/row_l2", axis1], "row_l")
    n.op("Gather", ["h/seqs", "s/row_e"], "seq_e", axis=0)  # tokens before the EOS, then EOS
    n.op("Gather", ["out/seqs", "s/row_l"], "seq_l", axis=0)
    n.op("Where", ["s/pick_eos", "s/seq_e", "s/seq_l"], "chosen")
    n.op("Unsqueeze", ["s/better", axis1], "better2")
    n.op("Where", ["s/better2", "s/chosen", "h/best_seq"], "out/best_seq")
    n.nodes += _any_left("out/done", "s/go_on", "s/")
    n.op("Not", ["out/done"], "live_after")
    n.op("Cast", ["s/live_after"], "live64", to=TensorProto.INT64)
    n.op("ReduceSum", ["s/live64"], "n_live", keepdims=0)
    n.op("Mul", ["s/n_live", n.const(np.array(4, dtype=np.int64), "four")], "live4")
    n.op("Mul", [f"{P}n_held", n.const(np.array(3, dtype=np.int64), "three")], "held3")
    n.op("Greater", ["s/live4", "s/held3"], "keep_all")  # not live <= 3/4 of held
    n.nodes.append(helper.make_node("And", ["s/go_on", "s/keep_all"], ["cond_out"]))
    nodes += n.nodes
    inits += n.inits
    elem = _elem(spec)
    carried = [(c, _TYPES[c]) for c in CARRIED] + [(p, elem) for p in _past(spec)]
    out_name = {c: f"out/{c}" for c in CARRIED} | {p: f"out/{q}" for p, q in zip(_past(spec), present, strict=True)}
    inputs = [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(f"h/{c}", e, None) for c, e in carried]
    outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])]
    outputs += [helper.make_tensor_value_info(out_name[c], e, None) for c, e in carried]
    return helper.make_graph(nodes, "beam_step", inputs, outputs, inits)


PER_SENTENCE = ("scores", "done", "count", "best_score", "best_seq", "sentmap", "limits")
PER_ROW = ("last", "seqs")  # and the encoder outputs; the cache is gathered through ``reorder``


def _phase_body(decoder: onnx.GraphProto, spec: fmt.GraphSpec) -> onnx.GraphProto:
    """The phase loop's body: keep the sentences not done (their rows, the cache through ``reorder``, which then
    restarts at identity), run the token loop over them, and write their best hypotheses into ``result`` at
    their original positions (``sentmap``)."""
    G, P = OUTER, PHASE
    elem = _elem(spec)
    fixed = [n for n in _fixed_names(spec) if n != "limits"]
    types = dict(_TYPES) | {n: elem for n in fixed} | {p: elem for p in _past(spec)} | {
        "sentmap": TensorProto.INT64, "limits": TensorProto.INT64, "src_mask": TensorProto.BOOL, "result": TensorProto.INT64}
    state = ["t", "last", "reorder", "scores", "done", "count", "best_score", "best_seq", "seqs", "sentmap", "limits",
             *fixed, *_past(spec), "result"]
    n = _Nodes(P)
    axis1 = n.const(np.array([1], dtype=np.int64), "axis1")
    minus1 = n.const(np.array([-1], dtype=np.int64), "minus1")
    zero, one = n.const(np.array(0, dtype=np.int64), "zero"), n.const(np.array(1, dtype=np.int64), "one")
    n.op("Not", [f"{P}in/done"], "live")
    n.op("NonZero", [f"{P}live"], "keep2")
    n.op("Reshape", [f"{P}keep2", minus1], "keep")  # held sentences still decoding (positions in the held set)
    n.op("Mul", [f"{P}keep", f"{G}K"], "keep_k")
    n.op("Unsqueeze", [f"{P}keep_k", axis1], "keep_k2")
    n.op("Add", [f"{P}keep_k2", f"{G}slots"], "rows2")
    n.op("Reshape", [f"{P}rows2", minus1], "rows")  # their rows, b * K + k
    for v in PER_SENTENCE:
        n.op("Gather", [f"{P}in/{v}", f"{P}keep"], f"{P}{v}" if v == "limits" else v, axis=0)
    for v in (*PER_ROW, *fixed):
        n.op("Gather", [f"{P}in/{v}", f"{P}rows"], v, axis=0)
    n.op("Gather", [f"{P}in/reorder", f"{P}rows"], "source")  # the cache row each kept row continues
    for v in _past(spec):
        n.op("Gather", [f"{P}in/{v}", f"{P}source"], v, axis=0)
    # the phase's shapes: Bh held sentences, Nh = Bh * K rows
    n.op("Shape", [f"{P}keep"], "B1")
    n.op("Squeeze", [f"{P}B1"], "n_held")
    n.op("Mul", [f"{P}B1", f"{G}K1"], "N1")
    n.op("Squeeze", [f"{P}N1"], "N")
    n.op("Range", [zero, f"{P}N", one], "reorder")
    n.op("Concat", [f"{P}B1", f"{G}K1", f"{G}W1"], "BKW", axis=0)
    n.op("Concat", [f"{P}B1", f"{G}K1", n.const(np.array([1], dtype=np.int64), "one1")], "BK1", axis=0)
    n.op("Concat", [f"{P}B1", f"{G}KW1"], "BKxW", axis=0)
    n.op("Range", [zero, f"{P}n_held", one], "sent")
    n.op("Mul", [f"{P}sent", f"{G}K"], "base0")
    n.op("Unsqueeze", [f"{P}base0", axis1], "base_row")
    n.op("Sub", [f"{G}steps", f"{P}in/t"], "remaining")
    token_state = [f"{P}in/t", f"{P}last", f"{P}reorder", f"{P}scores", f"{P}done", f"{P}count", f"{P}best_score",
                   f"{P}best_seq", f"{P}seqs", *[f"{P}{v}" for v in _past(spec)]]
    ends = [f"{P}out/{c}" for c in CARRIED] + [f"{P}out/{v}" for v in _past(spec)]
    n.nodes.append(helper.make_node("Loop", [f"{P}remaining", f"{G}true", *token_state], ends, body=_body(decoder, spec)))
    n.op("Unsqueeze", [f"{P}sentmap", axis1], "sentmap2")
    n.op("ScatterND", [f"{P}in/result", f"{P}sentmap2", f"{P}out/best_seq"], f"{P}out/result")
    n.nodes += _any_left(f"{P}out/done", f"{P}cond_out", P)
    out = {v: f"{P}out/{v}" if v in CARRIED or v in _past(spec) or v == "result" else f"{P}{v}" for v in state}
    inputs = [helper.make_tensor_value_info(f"{P}iter", TensorProto.INT64, []),
              helper.make_tensor_value_info(f"{P}cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(f"{P}in/{v}", types[v], None) for v in state]
    outputs = [helper.make_tensor_value_info(f"{P}cond_out", TensorProto.BOOL, [])]
    outputs += [helper.make_tensor_value_info(out[v], types[v], None) for v in state]
    return helper.make_graph(n.nodes, "beam_phase", inputs, outputs, n.inits)


def build_beam(directory: Path | str) -> onnx.ModelProto:
    """The beam-search graph of the exported variant in ``directory`` (in memory; not written). Inputs and
    output as in the module's docstring; the encoder runs as its own session with ``expand`` = beam.

    Two nested Loops, as ``graphs_greedy``'s: a phase loop whose body keeps the sentences not done, around a
    token loop that stops when a quarter of the held sentences are done (done sentences' rows are no longer
    computed: the step-wise runtime skips them too)."""
    directory = Path(directory)
    spec = fmt.GraphSpec.load(directory)
    decoder_model = _load(directory, fmt.DECODER_FILE)
    L, elem = spec.decoder_layers, _elem(spec)
    g = _Nodes(OUTER)
    G = OUTER
    i64 = np.int64
    zero1, one1 = g.const(np.array([0], dtype=i64), "zero1"), g.const(np.array([1], dtype=i64), "one1")
    zero, one = g.const(np.array(0, dtype=i64), "zero"), g.const(np.array(1, dtype=i64), "one")
    # sizes: B sentences, K beams, N = B * K rows, W = min(2K, V), R = min(2K, K * W), T = max(limits)
    g.op("Shape", ["limits"], "B1")
    g.op("Reshape", ["beam", one1], "K1")
    g.op("Squeeze", [f"{G}K1"], "K")
    g.op("Mul", [f"{G}B1", f"{G}K1"], "N1")
    g.op("Mul", [f"{G}K1", g.const(np.array([2], dtype=i64), "two1")], "K2")
    g.op("Min", [f"{G}K2", g.const(np.array([spec.vocab_size], dtype=i64), "V1")], "W1")
    g.op("Squeeze", [f"{G}W1"], "W")
    g.op("Mul", [f"{G}K1", f"{G}W1"], "KW1")
    g.op("Min", [f"{G}K2", f"{G}KW1"], "R1")
    g.op("Squeeze", [f"{G}R1"], "R")
    g.op("Sub", [f"{G}R", one], "R_1")
    g.op("Concat", [f"{G}B1", f"{G}K1"], "BK", axis=0)
    g.op("ReduceMax", ["limits"], "steps", keepdims=0)
    g.op("Reshape", [f"{G}steps", one1], "T1")
    g.op("Concat", [f"{G}N1", f"{G}T1"], "NT", axis=0)
    g.op("Concat", [f"{G}B1", f"{G}T1"], "BT", axis=0)
    # index constants: rank (1, R), slots (1, K), cols (1, T)
    g.op("Range", [zero, f"{G}R", one], "rank0")
    g.op("Unsqueeze", [f"{G}rank0", zero1], "rank")
    g.op("Less", [f"{G}rank", f"{G}K"], "rank_lt_k")
    g.op("Range", [zero, f"{G}K", one], "slots0")
    g.op("Unsqueeze", [f"{G}slots0", zero1], "slots")
    g.op("Range", [zero, f"{G}steps", one], "cols0")
    g.op("Unsqueeze", [f"{G}cols0", zero1], "cols")
    g.op("Squeeze", [f"{G}B1"], "B")
    g.op("Range", [zero, f"{G}B", one], "sentmap0")
    # initial state: beam 0 of each sentence alive at score 0, the others at -inf; hypotheses all EOS
    eos = g.const(np.array([spec.eos_id], dtype=i64), "eos")
    g.op("Equal", [f"{G}slots", zero], "first_slot")
    g.op("Where", [f"{G}first_slot", g.const(np.array(0.0), "zero_d"), g.const(np.array(NEG_INF), "neg_inf")], "scores_row")
    g.op("Expand", [f"{G}scores_row", f"{G}BK"], "scores0")
    g.op("Expand", [g.const(np.array([spec.decoder_start_id], dtype=i64), "start"), f"{G}N1"], "last0")
    g.op("Squeeze", [f"{G}N1"], "N")
    g.op("Range", [zero, f"{G}N", one], "reorder0")
    g.op("Expand", [g.const(np.array([False]), "false"), f"{G}B1"], "done0")
    g.op("Expand", [zero1, f"{G}B1"], "count0")
    g.op("Expand", [g.const(np.array([NEG_INF]), "neg_inf1"), f"{G}B1"], "best_score0")
    g.op("Expand", [eos, f"{G}BT"], "best_seq0")
    g.op("Expand", [eos, f"{G}NT"], "seqs0")
    g.op("Concat", [f"{G}N1", g.const(np.array([spec.n_heads, 0, spec.head_dim], dtype=i64), "hpd")], "empty_shape", axis=0)
    g.op("ConstantOfShape", [f"{G}empty_shape"], "empty", value=numpy_helper.from_array(np.zeros(1, dtype=spec.float_dtype)))
    g.const(np.array(True), "true")
    fixed = [n for n in _fixed_names(spec) if n != "limits"]
    state0 = [zero, f"{G}last0", f"{G}reorder0", f"{G}scores0", f"{G}done0", f"{G}count0", f"{G}best_score0",
              f"{G}best_seq0", f"{G}seqs0", f"{G}sentmap0", "limits", *fixed, *[f"{G}empty"] * (2 * L), f"{G}best_seq0"]
    ends = [f"{G}end{j}" for j in range(len(state0) - 1)] + [BEAM_OUTPUT]
    g.nodes.append(helper.make_node("Loop", [f"{G}steps", f"{G}true", *state0], ends,
                                    body=_phase_body(decoder_model.graph, spec)))
    inputs = [helper.make_tensor_value_info("limits", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("beam", TensorProto.INT64, []),
              helper.make_tensor_value_info("length_penalty", TensorProto.DOUBLE, []),
              helper.make_tensor_value_info("src_mask", TensorProto.BOOL, ["rows", 1, 1, "src_len"])]
    inputs += [helper.make_tensor_value_info(n, elem, ["rows", spec.n_heads, "src_len", spec.head_dim])
               for i in range(L) for n in fmt.cross_names(i)]
    graph = helper.make_graph(g.nodes, "tzip_beam", inputs,
                              [helper.make_tensor_value_info(BEAM_OUTPUT, TensorProto.INT64, ["batch", "steps"])], g.inits)
    model = helper.make_model(graph, opset_imports=list(decoder_model.opset_import), producer_name="tzip")
    model.ir_version = 9
    return model
