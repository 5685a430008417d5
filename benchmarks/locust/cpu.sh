#!/usr/bin/env bash
# The CPU load tests committed under benchmarks/locust/cpu (about 8 minutes on 2 cores):
# 64 locust users for 60 s against each headline variant alone, the same load with batching switched
# off (TZIP_MAX_BATCH_SIZE=1), and every exported variant at once (per-variant stats, round-robin).
# Usage: benchmarks/locust/cpu.sh [HEADLINE_VARIANT ...]   (default: kmeans-4bit base int8)
# Environment: PY (default .venv/bin/python), EXPORT_ROOT (default build/onnx), USERS, SECONDS_PER_RUN, OUT.
set -euo pipefail
py=${PY:-.venv/bin/python}
root=${EXPORT_ROOT:-build/onnx}
users=${USERS:-64}
secs=${SECONDS_PER_RUN:-60}
out=${OUT:-benchmarks/locust/cpu}
headline=("$@")
[ ${#headline[@]} -gt 0 ] || headline=(kmeans-4bit base int8)
all=$("$py" -c "import sys; from compression.runtime import list_exported; print(','.join(m['name'] for m in list_exported(sys.argv[1])))" "$root")
run() { "$py" benchmarks/locust/run.py --users "$users" --time "$secs" --out "$out" --env "TZIP_MODEL_ROOT=$root" "$@"; }
for v in "${headline[@]}"; do
  run --label "$v" --variants "$v"
done
run --label "${headline[0]}-batch1" --variants "${headline[0]}" --env TZIP_MAX_BATCH_SIZE=1
run --label all-variants --variants "$all" --env TZIP_MEMORY_BUDGET_MB=4096
"$py" benchmarks/locust/run.py --report "$out"
