#!/usr/bin/env bash
# Issue 16 on one H200, in one call of at most 9 minutes: the sequence-level distillation targets, then
# every frontier/seq-KD variant retrained side by side on the one GPU, each measured as it loads from disk.
#
#   1. seq-KD targets: models/base's beam-5 translations of the 29,000 training sources
#      (`python -m compression seqkd`, batched beam search; about 1 minute estimated, capped at SEQKD_TIMEOUT
#      seconds, then greedy instead: the summary says which). Skipped when $SEQKD_TARGETS already exists
#      (commit the returned file to data/seqkd/ and later runs keep the whole budget for retraining).
#      Meanwhile, in one more process: per-length greedy scores of models/base and of the shipped variants
#      (`report --measure-robustness`) for benchmarks/compression/robustness.json.
#   2. The configs in $RETRAINED, one process each, every one with the same wall-clock budget: what is
#      left of $BUDGET after step 1 less the measuring and packing reserves (about 5 minutes).
#   3. Packing into $OUT (at most 6 files, each under 16 MiB): variants.tar.gz.part-aa[, -ab] (the variant
#      directories), logs.tar.gz (logs, retraining histories, summary), seqkd.tar.gz (the targets and
#      their JSON), robustness.tar.gz (robustness.json and the report made there), summary.txt.
#
# How to run it (device call, about 8.5 minutes wall time; BUDGET=510 s for the work, ~15 s for packing):
#   carry   [".whl"]  holding the cp312 wheels the device lacks for pydantic (the compress configs):
#           pydantic==2.14.4, pydantic_core==2.50.5 (cp312 manylinux2014_x86_64), annotated_types==0.8.0,
#           typing_inspection==0.4.5, typing_extensions==4.16.0; get them with
#             python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#               --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 pydantic-core==2.50.5 \
#               annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
#           (a .whl/ holding more wheels is fine: only these are installed, into /tmp/site)
#   command bash scripts/device_frontier.sh          (PYTHONPATH is set here: /tmp/site and the repository)
# Local smoke test of the plumbing (CPU; 200 sources, beam 2, 3 steps, 16 sentences; a few minutes):
#   SMOKE=1 PY=.venv/bin/python OUT=/tmp/frontier bash scripts/device_frontier.sh
#
# Environment: PY (python3), WHEELS (.whl: the folder of the pydantic wheels), OUT (runs/frontier-out), DEVICE (cuda; cpu with SMOKE), BUDGET (510),
# RETRAINED (config names under configs/variants/), SEQKD_TARGETS (data/seqkd/train.base-beam5.de.gz),
# SEQKD_BEAM (5), SEQKD_TIMEOUT (150), EVAL_RESERVE (105: seconds after retraining for the final validation,
# writing and measuring), ROBUSTNESS (1: measure the base and the shipped variants; 0: skip).
set -uo pipefail
PY=${PY:-python3}
out=${OUT:-runs/frontier-out}
device=${DEVICE:-cuda}
budget=${BUDGET:-510}
retrained=${RETRAINED:-"pruned-90-seqkd binary-seqkd kmeans-2bit-seqkd deep-compression-seqkd deep-compression-2bit deep-compression-1bit dc-s965-b2"}
targets=${SEQKD_TARGETS:-data/seqkd/train.base-beam5.de.gz}
beam=${SEQKD_BEAM:-5}
seqkd_timeout=${SEQKD_TIMEOUT:-150}
eval_reserve=${EVAL_RESERVE:-105}
pack_reserve=20
startup=25  # seconds a compress process spends before its budget starts (imports, CUDA, model, k-means)
robust=${ROBUSTNESS:-1}
seqkd_args=(--batch-size 1000)
train_args=()
eval_args=()
if [ -n "${SMOKE:-}" ]; then
  device=${DEVICE:-cpu}
  targets=${SEQKD_TARGETS:-runs/frontier/seqkd-smoke.de.gz}
  beam=${SEQKD_BEAM:-2}
  seqkd_args=(--batch-size 50 --limit 200)
  train_args=(--max-steps 3 --train-limit 200 --max-tokens 512)
  eval_args=(--limit 16)
  retrained=${RETRAINED:-"deep-compression-1bit kmeans-2bit-seqkd"}
  robust=${ROBUSTNESS:-0}
  budget=${BUDGET:-1500} seqkd_timeout=${SEQKD_TIMEOUT:-900}
  export OMP_NUM_THREADS=1
fi
runs=runs/frontier
rm -rf "$runs" && mkdir -p "$runs/variants" "$out" /tmp/site
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TQDM_MININTERVAL=30 PYTHONUNBUFFERED=1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! $PY -c "import pydantic" 2>/dev/null; then
  wh=${WHEELS:-.whl}
  wheels=$(ls $wh/pydantic-2*.whl $wh/pydantic_core-*.whl $wh/annotated_types-*.whl \
              $wh/typing_inspection-*.whl $wh/typing_extensions-*.whl 2>/dev/null)
  [ -n "$wheels" ] || { echo "pydantic is missing and $wh/ holds no wheels for it: see this script's header"; exit 2; }
  $PY -m pip install -q --no-index --no-deps --target /tmp/site $wheels || exit 2
fi
echo "device=$device budget=${budget}s retrained=[$retrained] targets=$targets"

# 1. seq-KD targets (beam, else greedy), and the base/shipped robustness scores beside them
robust_pid=
if [ "$robust" = 1 ]; then
  timeout -k 5 $((budget - pack_reserve)) $PY -m compression report --root models --out "$runs/report" \
    --measure-robustness --device "$device" >"$runs/robustness.log" 2>&1 &
  robust_pid=$!
fi
seqkd_note="carried: $targets existed"
if [ ! -f "$targets" ]; then
  if timeout -k 5 "$seqkd_timeout" $PY -m compression seqkd --beam "$beam" --out "$targets" --device "$device" \
      "${seqkd_args[@]}" >"$runs/seqkd.log" 2>&1; then
    seqkd_note="beam $beam: $(tail -1 "$runs/seqkd.log")"
  else
    echo "beam-$beam targets failed or took over ${seqkd_timeout}s: greedy instead (see seqkd.log)"
    timeout -k 5 120 $PY -m compression seqkd --beam 1 --out "$targets" --device "$device" \
      "${seqkd_args[@]}" >"$runs/seqkd-greedy.log" 2>&1 || { echo "no seq-KD targets (see $runs/seqkd-greedy.log)"; }
    seqkd_note="greedy (beam $beam over ${seqkd_timeout}s): $(tail -1 "$runs/seqkd-greedy.log")"
  fi
fi
echo "seq-KD targets at ${SECONDS}s: $seqkd_note"

# 2. retraining side by side, all with the budget that is left
minutes=$(python3 -c "print(round(max(0.5, ($budget - $pack_reserve - $eval_reserve - $startup - $SECONDS) / 60), 2))")
if [ -n "${SMOKE:-}" ]; then schedule="3 steps (smoke)"; else schedule="${minutes} min"; train_args=(--max-minutes "$minutes"); fi
hard=$((budget - pack_reserve - SECONDS))
echo "retraining: $schedule each (hard stop after ${hard}s)"
pids=()
for v in $retrained; do
  timeout -k 10 "$hard" $PY -m compression compress --config "configs/variants/$v.toml" --out "$runs/variants/$v" \
    --device "$device" --seqkd-path "$targets" --log "$runs/$v.history.json" "${train_args[@]}" "${eval_args[@]}" \
    >"$runs/$v.log" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || { echo "a variant failed (pid $p)"; failed=1; }; done
[ -n "$robust_pid" ] && { wait "$robust_pid" || echo "robustness measurement incomplete (see robustness.log)"; }

# 3. one line per variant (the JSON each compress run prints last), then pack
{
  echo "seq-KD: $seqkd_note"
  echo "retraining: $schedule each, device $device"
  for v in $retrained; do echo "$v: $(grep '^{' "$runs/$v.log" | tail -1)"; done
} | tee "$runs/summary.txt"
cp "$runs/summary.txt" "$out/summary.txt"
tar -czf - -C "$runs" variants | split -b 15M - "$out/variants.tar.gz.part-"
tar -czf "$out/logs.tar.gz" -C "$runs" $(cd "$runs" && ls *.log *.json summary.txt 2>/dev/null)
[ -f "$targets" ] && tar -czf "$out/seqkd.tar.gz" -C "$(dirname "$targets")" \
  "$(basename "$targets")" "$(basename "${targets%.gz}").json"
[ -d "$runs/report" ] && tar -czf "$out/robustness.tar.gz" -C "$runs" report
ls -l "$out"
echo "done in ${SECONDS}s"
exit $failed
