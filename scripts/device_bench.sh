#!/usr/bin/env bash
# Issue 4 on the H200: ONNX Runtime CUDA (fp32, fp16, int8 graphs) beside PyTorch eager fp32 on the same GPU,
# greedy batch-1 latency and batch-64 throughput on test_2016_flickr, plus BLEU and token identity of each run.
#
# Two device calls, back to back (see ../shared/docs/gpu.md for the onnxruntime-gpu parts):
#   1. carry [".ortgpu/ort.part-aa"]:  mkdir -p /tmp/ort && cp .ortgpu/ort.part-aa /tmp/ort/
#   2. carry [".ortgpu/ort.part-ab"]:  mkdir -p /tmp/site && cat /tmp/ort/ort.part-aa .ortgpu/ort.part-ab | tar xJ -C /tmp/site && bash scripts/device_bench.sh
# Nothing else needs carrying: models/base is tracked; the exports are made on the device (~20 s).
# Runtime about 4-5 minutes. Writes to $OUT: env.txt, export.log, results_cuda.json, results_cuda.md, bench.log,
# results_cuda_host_argmax.{json,md}, bench_host_argmax.log (copy the results_cuda*.{json,md} to benchmarks/speed/).
set -euo pipefail
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PY=${PY:-python3}

$PY - <<'PYEOF' 2>&1 | tee "$OUT/env.txt"
import torch  # before onnxruntime: it loads the CUDA libraries onnxruntime-gpu uses
import onnxruntime as ort
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("onnxruntime", ort.__version__, ort.get_available_providers())
assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime-gpu not found in /tmp/site"
PYEOF

set -o pipefail
$PY -m compression export --variant base --variant fp16 --variant int8 --out /tmp/onnx 2>&1 | tee "$OUT/export.log"
$PY benchmarks/speed/bench.py --device cuda --export-dir /tmp/onnx --batch 64 --no-ct2 \
    --out "$OUT/results_cuda" 2>&1 | tee "$OUT/bench.log"
# A/B of greedy's argmax on the GPU (the default since c9a0350) against the host argmax that results_cuda.md
# of the first run measured: the same graphs with --host-argmax (about 1 minute more)
$PY benchmarks/speed/bench.py --host-argmax --device cuda --export-dir /tmp/onnx --batch 64 --no-ct2 --no-torch \
    --variants base,fp16 --out "$OUT/results_cuda_host_argmax" 2>&1 | tee "$OUT/bench_host_argmax.log"
