#!/usr/bin/env bash
# One H200 call for issues 16 and 13 together (about 9 minutes): the frontier retraining on the GPU
# (scripts/device_frontier.sh, pinned to cores 0-8) and, on the other cores at the same time, the CPU engine
# comparison of issue 13 (benchmarks/speed/engines.py: ONNX Runtime step/Loop vs CTranslate2, one process per
# engine, 3 interleaved rounds, 1/2/4 threads on cores 9 / 10-11 / 12-15). The two share the host: the CPU
# figures carry that load (recorded per child).
# Calls before it (the tree may carry 64 MiB; the fp32 base travels in two halves, see device_runtime.sh):
#   1. carry .carry/ct2.part-aa, .carry/base/model-00001-of-00002.safetensors -> mkdir -p /tmp/ort/base && cp .carry/ct2.part-aa /tmp/ort/ && cp .carry/base/* /tmp/ort/base/
#   2. carry .carry/ct2.part-ab, .carry/base/model-00002-of-00002.safetensors, .carry/whl -> bash scripts/device_final.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site /tmp/eng
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
cp .carry/base/* /tmp/ort/base/ 2>/dev/null; cp /tmp/ort/base/*.safetensors models/base/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/whl/*.whl
cat /tmp/ort/ct2.part-aa .carry/ct2.part-ab > /tmp/ctranslate2-4.8.5-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/ctranslate2-*.whl
python3 -m compression export --variant base --variant int8 --out /tmp/onnx > /tmp/eng/export.log 2>&1
for t in 1 2 4; do
  first=$((t == 1 ? 9 : (t == 2 ? 10 : 12)))
  timeout 500 python3 benchmarks/speed/engines.py --engines ort-step-int8,ort-loop-fp32,ort-loop-int8,ct2-fp32,ct2-int8 \
      --threads $t --first-core $first --rounds 3 --latency-n 50 --throughput-n 500 \
      --export-dir /tmp/onnx --ct2-dir /tmp/ct2_t$t --out /tmp/eng/engines_t$t > /tmp/eng/log_t$t 2>&1 &
done
BUDGET=${BUDGET:-480} taskset -c 0-8 bash scripts/device_frontier.sh
wait
tar czf "$OUT/engines_cpu.tgz" -C /tmp eng
ls -la "$OUT"
