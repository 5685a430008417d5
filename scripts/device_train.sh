#!/usr/bin/env bash
# Train every candidate recipe side by side on one GPU (the H200 is idle with one small model),
# select the one with the best validation BLEU (never the test set), evaluate it on test_2016_flickr,
# and pack it as models/base. Usage: scripts/device_train.sh [CANDIDATE_DIR] [DEVICE]
set -euo pipefail
candidates=${1:-configs/candidates}
device=${2:-cuda}
out=${OUT:-runs/out}
mkdir -p runs "$out"
pids=()
for c in "$candidates"/*.toml; do
  n=$(basename "$c" .toml)
  OMP_NUM_THREADS=3 python3 -m compression train --config "$c" --out "runs/$n" --device "$device" >"runs/$n.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "a candidate failed (pid $p)"; done
best=$(python3 - "$candidates" <<'PY'
import json, pathlib, sys
scores = {}
for c in sorted(pathlib.Path(sys.argv[1]).glob("*.toml")):
    log = pathlib.Path("runs") / c.stem / "train_log.json"
    if log.exists():
        sel = json.loads(log.read_text())["selection"]
        scores[c.stem] = sel["candidates"][sel["chosen"]]
json.dump(scores, open("runs/selection.json", "w"), indent=2)
print(max(scores, key=scores.get))
PY
)
echo "selected $best: $(cat runs/selection.json)"
rm -rf models/base && mkdir -p models && cp -r "runs/$best/model" models/base
cp "$candidates/$best.toml" models/base/../base.train.toml
python3 -m compression evaluate --model models/base --device "$device" --write --json | tee runs/test_scores.json
tar -cf - models/base models/base.train.toml | split -b 15M - "$out/base.tar.part-"
tar -czf "$out/logs.tar.gz" runs/*.log runs/*/train_log.json runs/*/train_config.json runs/selection.json runs/test_scores.json
