"""One decoder-step MatMul in each int8 form ONNX Runtime offers, beside float32, on this CPU (one thread).

    python benchmarks/speed/matmul_forms.py     # -> benchmarks/speed/matmul_forms.{json,md}

The shapes of a decoder step of the shipped model (d_model 256, ffn 1024, vocabulary 8000) at M rows:
fused q/k/v (256 x 768), fc1 (256 x 1024), fc2 (1024 x 256), logits (256 x 8000). Forms:
- ``fp32``: MatMul (what the fp32 export runs, as Gemm);
- ``nbits8``: com.microsoft MatMulNBits, 8 bits, block 256, accuracy_level 4 (activations quantized per
  row and block inside the kernel): what the int8 export runs; each row's result is its own;
- ``dqmm``: com.microsoft DynamicQuantizeMatMul: one activation scale for the whole (M, K) input, so a
  row's result depends on the other rows of its batch (and of its row group).
Median microseconds per call over --calls calls (random weights; timing does not depend on values).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostinfo import cpu_name  # noqa: E402

SHAPES = {"qkv": (256, 768), "fc1": (256, 1024), "fc2": (1024, 256), "logits": (256, 8000)}
FORMS = ("fp32", "nbits8", "dqmm")


def session(form: str, K: int, N: int) -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    if form == "fp32":
        inits = [numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32), "w")]
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
    elif form == "nbits8":
        inits = [numpy_helper.from_array(rng.integers(0, 255, (N, K // 256, 256)).astype(np.uint8), "w"),
                 numpy_helper.from_array(np.full(N * (K // 256), 0.01, np.float32), "s")]
        node = helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft", K=K, N=N, bits=8,
                                block_size=256, accuracy_level=4)
    else:
        inits = [numpy_helper.from_array(rng.integers(-63, 64, (K, N)).astype(np.int8), "w"),
                 numpy_helper.from_array(np.full(N, 0.01, np.float32), "s")]
        node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], form, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,16,32")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "speed" / "matmul_forms"))
    args = ap.parse_args()
    rows = []
    for m in map(int, args.rows.split(",")):
        x = np.random.default_rng(1).random((m, 1024), dtype=np.float32)
        for label, (K, N) in SHAPES.items():
            row = {"rows": m, "matmul": label, "K": K, "N": N}
            for form in FORMS:
                s, feed = session(form, K, N), {"x": np.ascontiguousarray(x[:, :K])}
                for _ in range(20):
                    s.run(None, feed)
                times = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    s.run(None, feed)
                    times.append((time.perf_counter() - t0) * 1e6)
                row[form] = statistics.median(times)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    command = "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:])
    result = {"command": command, "cpu": cpu_name(), "onnxruntime": ort.__version__, "load1": os.getloadavg()[0], "rows": rows}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# One decoder-step MatMul per int8 form, one thread ({result['cpu']}, onnxruntime {ort.__version__})", "",
             f"Command: `{command}`; load average {result['load1']:.2f}. Median us per call.", "",
             "| rows | matmul (K x N) | fp32 | nbits8 (int8 export) | dqmm (per-tensor) | nbits8 / fp32 | nbits8 / dqmm |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rows']} | {r['matmul']} ({r['K']} x {r['N']}) | {r['fp32']:.1f} | {r['nbits8']:.1f} | {r['dqmm']:.1f} "
              f"| {r['nbits8'] / r['fp32']:.2f} | {r['nbits8'] / r['dqmm']:.2f} |" for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
