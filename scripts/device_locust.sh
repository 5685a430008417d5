#!/usr/bin/env bash
# Load test on the H200: the service on CUDA serving the fp16 variant, locust on the same machine.
# Target: >= 1,000 sentences/s sustained over HTTP. 60 s runs: one sentence per request (256 users,
# 4 locust processes), eight sentences per request (128 users), and (ALL_VARIANTS=1, the default) every
# shipped variant at once, round-robin, one sentence per request; results come back as one archive.
# About 5 minutes.
#
# Before it (see the shared docs/gpu.md): call 1 puts ort.part-aa in /tmp/ort; this is call 2 with
#   carry [".ortgpu/ort.part-ab", ".whl"]   (.whl from scripts/locust_wheels.sh, ~20 MiB)
#   command  bash scripts/device_locust.sh
# It exports the fp16 variant there (torch is on the device), so no export needs to be carried.
# Writes to $OUT: locust_gpu.tar.gz (per run: CSV, HTML report, summary.json, service and locust logs),
# results.md (the table) and device_locust.log.
# Local smoke test of the plumbing (CPU, 5 s runs, nothing installed):
#   PY=.venv/bin/python SECONDS_PER_RUN=5 EXPORT_ROOT=build/onnx OUT=/tmp/dl bash scripts/device_locust.sh
set -euo pipefail
out=${OUT:-runs/out}
py=${PY:-python3}
secs=${SECONDS_PER_RUN:-60}
root=${EXPORT_ROOT:-build/onnx}
mkdir -p "$out" /tmp/site
exec > >(tee "$out/device_locust.log") 2>&1
export PYTHONUNBUFFERED=1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ ! -d /tmp/site/onnxruntime ] && [ -f /tmp/ort/ort.part-aa ] && [ -f .ortgpu/ort.part-ab ]; then
  cat /tmp/ort/ort.part-aa .ortgpu/ort.part-ab | tar xJ -C /tmp/site
fi
if ! "$py" -c "import fastapi, uvicorn, pydantic_settings, prometheus_client, locust" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
# the CUDA 13 libraries come with torch's nvidia-* wheels: put them where ONNX Runtime looks
nvlibs=$("$py" - <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(base, "nvidia", "*", "lib", "*.so*")))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$py" -c "import onnxruntime as o, fastapi, locust; print('onnxruntime', o.__version__, o.get_available_providers())"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

if [ ! -f "$root/fp16/manifest.json" ]; then
  "$py" -m compression export --variant fp16 --out "$root"
fi
res=runs/locust-gpu
rm -rf "$res" && mkdir -p "$res"
common=(--time "$secs" --out "$res" --ready-timeout 240
        --env TZIP_DEVICE=cuda --env "TZIP_MODEL_ROOT=$root" --env TZIP_MAX_BATCH_SIZE=256
        --env TZIP_MAX_WAIT_MS=5 --env TZIP_MAX_QUEUE=8192 --env TZIP_INFERENCE_THREADS=2 --env TZIP_DEFAULT_VARIANT=fp16
        --env "TZIP_MAX_BATCH_ROWS=${MAX_BATCH_ROWS:-256}")
"$py" benchmarks/locust/run.py --label h200-fp16-1text --variants fp16 "${common[@]}" --users 256 --texts 1 --processes 4
"$py" benchmarks/locust/run.py --label h200-fp16-8texts --variants fp16 "${common[@]}" --users 128 --texts 8 --processes 4
if [ "${ALL_VARIANTS:-1}" != 0 ]; then  # every shipped variant at once on CUDA: per-variant figures
  [ -f "$root/kmeans-4bit/manifest.json" ] || "$py" -m compression export --all --out "$root"
  all=$("$py" -c "import sys; from compression.runtime.catalogue import list_exported; print(','.join(m['name'] for m in list_exported(sys.argv[1])))" "$root")
  "$py" benchmarks/locust/run.py --label h200-all-variants --variants "$all" "${common[@]}" \
    --users 256 --texts 1 --processes 4 --env TZIP_MEMORY_BUDGET_MB=8192
fi
"$py" benchmarks/locust/run.py --report "$res"
grep -h '"provider"\|CUDA\|provider' "$res"/*/service.log | head -5 || true
cp "$res/results.md" "$out/results.md"
tar -czf "$out/locust_gpu.tar.gz" -C runs locust-gpu
