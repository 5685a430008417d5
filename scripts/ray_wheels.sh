#!/usr/bin/env bash
# Download (on this machine) the Python 3.12 wheels that the H200 lacks for scripts/device_ray.sh: ray[serve],
# the service (fastapi, uvicorn[standard], pydantic-settings, prometheus-client) and locust, with their
# dependencies, minus what the device has (numpy, protobuf via onnx, torch's filelock, jinja2, markupsafe and
# typing-extensions, pytest's packaging, pluggy, iniconfig, pygments). The small wheels go to .whl/; the ray wheel
# (~70 MiB, over one call's 64 MiB) is split into 40 MiB parts under .whl-big/ (shared docs/gpu.md: "A wheel
# larger than one call"). Both folders are git-ignored.
set -euo pipefail
dest=${1:-.whl}
big=${2:-.whl-big}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest" "$big"
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" \
  "ray[serve]==2.60.0" fastapi==0.165.0 "uvicorn[standard]==0.54.0" pydantic-settings==2.16.3 \
  prometheus-client==0.26.0 locust==2.47.0 pysbd==0.3.4
project() { basename "$1" | sed -E 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--'; }
skip=" numpy protobuf filelock jinja2 markupsafe typing-extensions packaging pytest pluggy iniconfig pygments "
for w in "$tmp"/*.whl; do
  p=$(project "$w")
  case "$skip" in *" $p "*) continue ;; esac
  if [ "$p" = ray ]; then
    (cd "$big" && split -b 40M "$w" "$(basename "$w").part-")
  else
    cp "$w" "$dest/"
  fi
done
du -sh "$dest" "$big"
ls "$big"
