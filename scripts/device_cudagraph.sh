#!/usr/bin/env bash
# Issue 13 on the H200: CUDA graphs for the greedy decoder step (compression/runtime/static_greedy.py) against the
# ONNX Loop and PyTorch eager, then the service over HTTP (locust) with them. STAGE picks the part:
#   STAGE=setup  onnxruntime-gpu into /tmp/site (part-aa already in /tmp/ort, part-ab carried), the wheels carried
#                under .carry/rw*/ installed, and the plumbing checked on a tiny random export (~1 min)
#   STAGE=main   the models (tar parts in /tmp/parts and .carry/), exports, the speed benchmarks, locust (~7 min)
#   STAGE=exports  the models and exports only (for scripts/device_ray.sh, whose EXPORT_ROOT is /tmp/onnx)
#   STAGE=beam   the models and exports as in main, then beam search as one ONNX Loop run (graphs_beam) against
#                step-wise beam search under CUDA: benchmarks/speed/beam_identity.py, base / fp16 / int8 (~6 min)
# Calls, each at most 64 MiB with the tree (move models/ out of the checkout first; it travels as a tar):
#   1. carry [.ortgpu/ort.part-aa]                       mkdir -p /tmp/ort && cp .ortgpu/ort.part-aa /tmp/ort/
#   2. carry [.ortgpu/ort.part-ab, .carry/rw2]           STAGE=setup bash scripts/device_cudagraph.sh
#   3. carry [.carry/mb1, .carry/mb2/models.tar.part-ab] mkdir -p /tmp/parts && cp .carry/mb*/* /tmp/parts/
#   4. carry [.carry/mb2/models.tar.part-ac, .carry/rw1] STAGE=main bash scripts/device_cudagraph.sh
# (.carry/mbN: `tar cf - models | split -b 19M - models.tar.part-`; .carry/rw1, rw2: the wheels of
# scripts/ray_wheels.sh in two halves.) Results in $OUT: summary.md, cudagraph_results.tgz, device_cudagraph.log.
set -euo pipefail
final=${OUT:-runs/out}  # at most 8 files come back: results go to $res, then one archive and one summary
out=/tmp/cudagraph-results
py=${PY:-python3}
mkdir -p "$final" "$out" /tmp/site /tmp/parts
exec > >(tee -a "$final/device_cudagraph.log") 2>&1
export PYTHONUNBUFFERED=1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ ! -d /tmp/site/onnxruntime ] && [ -f /tmp/ort/ort.part-aa ] && [ -f .ortgpu/ort.part-ab ]; then
  cat /tmp/ort/ort.part-aa .ortgpu/ort.part-ab | tar xJ -C /tmp/site
fi
for d in ${SKIP_WHEELS:+none} .carry/rw1 .carry/rw2; do
  [ -z "${SKIP_WHEELS:-}" ] && [ -d "$d" ] && "$py" -m pip install -q --no-index --no-deps --target /tmp/site "$d"/*.whl 2>&1 | tail -2
done
nvlibs=$("$py" - <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(base, "nvidia", "*", "lib", "*.so*")))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$py" -c "import torch, onnxruntime as o; print('torch', torch.__version__, '| onnxruntime', o.__version__, o.get_available_providers())"

case "${STAGE:-main}" in
  setup)
    "$py" benchmarks/speed/static_identity.py --tiny --device cuda --latency-n 20 --out "$out/static_tiny"
    ;;
  main|beam|exports)
    if [ ! -f models/base/config.json ]; then
      cat /tmp/parts/models.tar.part-* .carry/mb2/models.tar.part-ac 2>/dev/null | tar x -C /tmp && cp -r /tmp/models .
    fi
    bench=/tmp/onnx-bench root=/tmp/onnx
    [ -f $bench/fp16/manifest.json ] || "$py" -m compression export --variant base --variant fp16 --variant int8 --out $bench
    [ -f $root/fp16/manifest.json ] || "$py" -m compression export --variant fp16 --variant int8 --variant kmeans-4bit \
      --variant kmeans-2bit --variant binary --variant binary-2c-g2 --variant pruned-90 --variant deep-compression \
      --variant deep-compression-4bit --variant deep-compression-2bit --variant dc-s905-b1g-c --out $root
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
    [ "${STAGE:-main}" = exports ] && exit 0
    if [ "${STAGE:-main}" = beam ]; then
      taskset -c 0-7 "$py" benchmarks/speed/beam_identity.py --device cuda --export-dir $bench --exports base,fp16,int8 \
        --batches 1,32 --out "$out/beam_identity_cuda" || true
      cat "$out"/*.md > "$final/summary.md" 2>/dev/null || true
      tar czf "$final/cudagraph_results.tgz" -C /tmp cudagraph-results
      exit 0
    fi
    taskset -c 0-7 "$py" benchmarks/speed/static_identity.py --device cuda --export-dir $bench --variants base,fp16 \
      --out "$out/static_identity"
    taskset -c 0-7 "$py" benchmarks/speed/bench.py --device cuda --export-dir $bench --batch 64 --no-ct2 \
      --variants base,fp16,int8 --out "$out/results_cuda_graph"
    taskset -c 0-7 "$py" benchmarks/speed/bench.py --device cuda --export-dir $bench --batch 64 --no-ct2 --no-torch \
      --no-cuda-graph --variants base,fp16,int8 --out "$out/results_cuda_loop"
    ALL_VARIANTS=0 EXPORT_ROOT=$root SECONDS_PER_RUN=${SECONDS_PER_RUN:-30} OUT=$out bash scripts/device_locust.sh || true
    ;;
  *) echo "unknown STAGE ${STAGE} (setup, main)"; exit 2 ;;
esac
cat "$out"/*.md > "$final/summary.md" 2>/dev/null || true
tar czf "$final/cudagraph_results.tgz" -C /tmp cudagraph-results
ls -la "$final"
