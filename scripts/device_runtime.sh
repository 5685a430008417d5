#!/usr/bin/env bash
# Issues 12 and 13 on the H200 machine (16 cores, 1 GPU): memory and CPU speed of every served form, each
# in its own process pinned with taskset, and GPU speed. About 7 minutes.
#
# The working tree may carry at most 64 MiB, so the fp32 base (30 MB) and the big wheels travel in parts over
# back-to-back calls (the machine keeps /tmp while warm). Here, first:
#   mkdir -p .carry/base && cp models/base/model-*.safetensors .carry/base/     # then move the shards out of
#   the checkout for the calls (they are tracked: the tree would be 50 MiB) and back afterwards.
#   split -b 21M ctranslate2-4.8.5-*.whl .carry/ct2.part-          (wheel from `pip download ctranslate2==4.8.5`)
# Calls (carry -> command):
#   1. .ortgpu/ort.part-aa                -> mkdir -p /tmp/ort && cp .ortgpu/ort.part-aa /tmp/ort/
#   2. .ortgpu/ort.part-ab, .carry/base/model-00001-of-00002.safetensors
#                                         -> cp -r .ortgpu/ort.part-ab .carry/base /tmp/ort/
#   3. .carry/base/model-00002-..., .carry/ct2.part-aa -> cp .carry/base/* /tmp/ort/base/ && cp .carry/ct2.part-aa /tmp/ort/
#   4. .carry/ct2.part-ab                 -> bash scripts/device_runtime.sh
# Results in $OUT: memory_t{1,2,4}.json, engines_t{1,2,4}.{json,md} (in one tar), results_cuda*.json/md, log.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
exec > >(tee "$OUT/device_runtime.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
py=python3
if [ ! -d /tmp/site/onnxruntime ]; then cat /tmp/ort/ort.part-aa /tmp/ort/ort.part-ab | tar xJ -C /tmp/site; fi
cp /tmp/ort/base/*.safetensors models/base/
if [ -f .carry/ct2.part-ab ] && [ ! -d /tmp/site/ctranslate2 ]; then
  cat /tmp/ort/ct2.part-aa .carry/ct2.part-ab > /tmp/ctranslate2-4.8.5-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
  $py -m pip install -q --no-index --no-deps --target /tmp/site /tmp/ctranslate2-*.whl
fi
$py - <<'PY'
import torch, onnxruntime as ort
print("torch", torch.__version__, torch.cuda.get_device_name(0), "| onnxruntime", ort.__version__, ort.get_available_providers())
assert "CUDAExecutionProvider" in ort.get_available_providers()
PY
lscpu | grep -E "Model name|^CPU\(s\)" || true
$py -m compression export --variant base --variant fp16 --variant int8 --variant kmeans-4bit --variant kmeans-2bit \
    --variant binary --variant deep-compression --variant pruned-90 --out /tmp/onnx
$py -m compression export --variant kmeans-4bit --graphs --name kmeans-4bit-graphs --out /tmp/onnx
V=kmeans-4bit,kmeans-2bit,binary,deep-compression,pruned-90
# CPU lanes, concurrently on disjoint cores: memory (cores 0-6), engines (cores 8-14); the GPU job on core 15
$py benchmarks/memory/bench.py --threads 1 --cores 0 --exports /tmp/onnx --variants $V --graph-exports kmeans-4bit-graphs --out "$OUT/memory_t1.json" > /tmp/m1.log 2>&1 &
$py benchmarks/memory/bench.py --threads 2 --cores 1-2 --exports /tmp/onnx --variants $V --graph-exports kmeans-4bit-graphs --out "$OUT/memory_t2.json" > /tmp/m2.log 2>&1 &
$py benchmarks/memory/bench.py --threads 4 --cores 3-6 --exports /tmp/onnx --variants $V --graph-exports kmeans-4bit-graphs --out "$OUT/memory_t4.json" > /tmp/m4.log 2>&1 &
mkdir -p /tmp/eng
for t in 1 2 4; do
  first=$((8 + (t == 1 ? 0 : (t == 2 ? 1 : 3))))
  $py benchmarks/speed/engines.py --threads $t --first-core $first --rounds 3 --latency-n 50 --throughput-n 500 \
      --export-dir /tmp/onnx --ct2-dir /tmp/ct2_t$t --out /tmp/eng/engines_t$t > /tmp/eng/log_t$t 2>&1 &
done
taskset -c 15 $py benchmarks/speed/bench.py --device cuda --export-dir /tmp/onnx --batch 64 --no-ct2 \
    --variants base,fp16,int8,kmeans-4bit,deep-compression --out "$OUT/results_cuda_loop"
taskset -c 15 $py benchmarks/speed/bench.py --device cuda --export-dir /tmp/onnx --batch 64 --no-ct2 --no-torch --step \
    --variants base,fp16 --out "$OUT/results_cuda_step"
wait
cp /tmp/m*.log /tmp/eng/ 2>/dev/null || true
tar czf "$OUT/engines_cpu.tgz" -C /tmp eng
ls -la "$OUT"
