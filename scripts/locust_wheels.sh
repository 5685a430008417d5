#!/usr/bin/env bash
# Download (on this machine) the Python 3.12 wheels that the H200 lacks for scripts/device_locust.sh:
# the service (fastapi, uvicorn with uvloop/httptools, pydantic-settings, prometheus-client, pydantic)
# and locust, with their dependencies, into .whl/ (git-ignored, ~20 MiB). One version of each package:
# a project that .whl/ already holds (e.g. pydantic carried for another job) is not added again, and
# what the device already has (numpy, onnx, sentencepiece, pytest and its dependencies) is left out.
set -euo pipefail
shopt -s nullglob
dest=${1:-.whl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" \
  fastapi==0.165.0 "uvicorn[standard]==0.54.0" "pydantic>=2.9" pydantic-settings==2.16.3 \
  prometheus-client==0.26.0 locust==2.47.0 pysbd==0.3.4
project() { basename "$1" | sed -E 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--'; }
have=" $(for w in "$dest"/*.whl; do [ -e "$w" ] || continue; project "$w"; done | tr '\n' ' ') "
skip=" pytest pluggy iniconfig packaging pygments numpy "
downloaded=("$tmp"/*.whl)
[ ${#downloaded[@]} -gt 0 ] || { echo "pip download fetched no wheels (see its output above)" >&2; exit 1; }
for w in "${downloaded[@]}"; do
  p=$(project "$w")
  case "$have$skip" in *" $p "*) continue ;; esac
  cp "$w" "$dest/"
done
# every package the device needs must now be in $dest, whether copied now or carried before
missing=()
for p in fastapi uvicorn pydantic pydantic-settings prometheus-client locust; do
  ls "$dest"/*.whl 2>/dev/null | xargs -r -n1 basename | sed -E 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--' | grep -qx "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || { echo "no wheel in $dest for: ${missing[*]}" >&2; exit 1; }
echo "$(ls "$dest"/*.whl | wc -l) wheels in $dest:"
du -sh "$dest"
