#!/usr/bin/env bash
# Issue 13, CPU: the speed benchmark on the device's 16-core host (CPU only; no onnxruntime-gpu needed: the
# device's onnxruntime 1.30 CPU build is used). Each engine in its own process pinned with taskset to cores
# FIRST..FIRST+T-1, threads 1, 2 and 4, interleaved rounds, medians, load recorded (benchmarks/speed/engines.py).
#
# Needs the CTranslate2 wheel for Python 3.12 (the device has none), e.g. from `pip download ctranslate2==4.8.5
# --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .carry/`
# (ctranslate2-4.8.5-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl, ~38 MB; carried in one call
# under 64 MiB only if the tracked fp32 base shards are not in the tree as well: see scripts/device_runtime.sh for
# carrying both in parts). With the wheel at .carry/ctranslate2-*.whl:
#   bash scripts/device_speed.sh                  # ~8 minutes; results in $OUT/engines_cpu16.{json,md}, log
# Without the wheel, CT2=0 bash scripts/device_speed.sh measures the ONNX Runtime engines alone.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
exec > >(tee "$OUT/device_speed.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
py=${PY:-python3}
engines=ort-loop-int8,ort-loop-fp32
if [ "${CT2:-1}" = 1 ]; then
  if [ ! -d /tmp/site/ctranslate2 ]; then
    $py -m pip install -q --no-index --no-deps --target /tmp/site .carry/ctranslate2-*.whl
  fi
  engines=$engines,ct2-int8,ct2-fp32
fi
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400 || true
$py -m compression export --variant base --variant int8 --out /tmp/onnx
$py benchmarks/speed/engines.py --engines $engines --threads 1,2,4 --split groups,intra --spin 0,1 \
    --rounds 3 --first-core ${FIRST:-8} --export-dir /tmp/onnx --ct2-dir /tmp/ct2 --out "$OUT/engines_cpu16"
