#!/usr/bin/env bash
# The CPU load tests committed under benchmarks/locust/cpu (about 15 minutes on 2 cores), 64 locust users each:
#   - HEADLINE alone for 60 s, and again with batching switched off (TZIP_MAX_BATCH_SIZE=1), same load;
#   - every other exported variant alone for SECONDS_PER_VARIANT (default 30 s): its own capacity;
#   - all variants at once for 60 s, round-robin (each gets 1/N of the users).
# Usage: benchmarks/locust/cpu.sh [HEADLINE]   (default kmeans-4bit)
# Environment: PY (default .venv/bin/python), EXPORT_ROOT (default build/onnx), USERS, OUT, SECONDS_PER_VARIANT.
set -euo pipefail
py=${PY:-.venv/bin/python}
root=${EXPORT_ROOT:-build/onnx}
users=${USERS:-64}
out=${OUT:-benchmarks/locust/cpu}
per=${SECONDS_PER_VARIANT:-30}
headline=${1:-kmeans-4bit}
names=$("$py" -c "import sys; from compression.runtime.catalogue import list_exported; print(' '.join(m['name'] for m in list_exported(sys.argv[1])))" "$root")
run() { "$py" benchmarks/locust/run.py --users "$users" --out "$out" --env "TZIP_MODEL_ROOT=$root" "$@"; }
run --label "$headline" --variants "$headline" --time 60
run --label "$headline-batch1" --variants "$headline" --time 60 --env TZIP_MAX_BATCH_SIZE=1
for v in $names; do
  [ "$v" = "$headline" ] || run --label "$v" --variants "$v" --time "$per"
done
run --label all-variants --variants "${names// /,}" --time 60 --env TZIP_MEMORY_BUDGET_MB=4096
"$py" benchmarks/locust/run.py --report "$out"
