#!/usr/bin/env bash
# Build every compressed variant on one GPU: the retrained ones side by side (one process each, a
# wall-clock budget each, distillation from models/base, selection on val), the post-training ones
# in one more process; each variant is then measured as it loads from disk (test_2016_flickr greedy
# and beam 5, val greedy). The variant directories are packed into $OUT as tar parts of 15 MiB.
#
#   scripts/device_compress.sh                          on the H200: about 8 minutes in all
#   SMOKE=1 PY=.venv/bin/python scripts/device_compress.sh   anywhere (CPU): 3 steps, 16 sentences
#
# Environment: DEVICE (cuda; cpu with SMOKE), MINUTES (retraining budget, default 6.0), PY (python3),
# OUT (runs/compress-out), RETRAINED / POSTTRAINING (config names under configs/variants/).
set -uo pipefail  # no -e: one failed variant must not stop the others or the packing; the exit status reports it
PY=${PY:-python3}
out=${OUT:-runs/compress-out}
minutes=${MINUTES:-6.0}
retrained=${RETRAINED:-"kmeans-4bit kmeans-2bit binary binary-2c pruned-90 deep-compression"}
posttraining=${POSTTRAINING:-"fp16 int8 kmeans-4bit-pt kmeans-2bit-pt pruned-50-pt binary-pt pruned-90-pt"}
deadline=${DEADLINE:-400}  # seconds after which no further post-training variant is started
# hard stops, so that a stuck process can never keep the packing below from running
retrain_timeout=$(python3 -c "print(int(float('$minutes') * 60 + 150))" 2>/dev/null || echo 510)
post_timeout=${POST_TIMEOUT:-120}
train_args=(--max-minutes "$minutes")
eval_args=()
device=${DEVICE:-cuda}
if [ -n "${SMOKE:-}" ]; then
  train_args=(--max-steps 3 --train-limit 2000 --max-tokens 512)
  export OMP_NUM_THREADS=1
  eval_args=(--limit 16)
  device=${DEVICE:-cpu}
  retrain_timeout=900 post_timeout=900
fi
runs=runs/compress
rm -rf "$runs" && mkdir -p "$runs/variants" "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TQDM_MININTERVAL=30
echo "device=$device minutes=$minutes retrained=[$retrained] post-training=[$posttraining]"

pids=()
for v in $retrained; do
  timeout -k 10 "$retrain_timeout" $PY -m compression compress --config "configs/variants/$v.toml" \
    --out "$runs/variants/$v" --device "$device" --log "$runs/$v.history.json" "${train_args[@]}" "${eval_args[@]}" >"$runs/$v.log" 2>&1 &
  pids+=($!)
done
(
  for v in $posttraining; do
    if [ "$SECONDS" -gt "$deadline" ]; then echo "skipped $v: past the ${deadline}s deadline"; continue; fi
    timeout -k 10 "$post_timeout" $PY -m compression compress --config "configs/variants/$v.toml" \
      --out "$runs/variants/$v" --device "$device" "${eval_args[@]}" >"$runs/$v.log" 2>&1 || echo "post-training variant $v failed (see $runs/$v.log)"
  done
) >"$runs/posttraining.log" 2>&1 &
pids+=($!)
failed=0
for p in "${pids[@]}"; do wait "$p" || { echo "a variant failed (pid $p)"; failed=1; }; done
cat "$runs/posttraining.log"

# one line per variant: the JSON summary each compress run prints last
for f in "$runs"/*.log; do
  [ "$(basename "$f")" = posttraining.log ] && continue
  echo "$(basename "$f" .log): $(grep '^{' "$f" | tail -1)"
done | tee "$runs/summary.txt"

for v in $retrained $posttraining; do  # every variant asked for must have been written, or the run failed
  [ -f "$runs/variants/$v/manifest.json" ] || { echo "variant $v was not written (see $runs/$v.log)" >&2; failed=1; }
done

tar -cf - -C "$runs" variants | split -b 15M - "$out/variants.tar.part-"
tar -czf "$out/logs.tar.gz" -C "$runs" $(cd "$runs" && ls *.log *.json summary.txt 2>/dev/null)
ls -l "$out"
echo "done in ${SECONDS}s"
exit $failed
