#!/usr/bin/env bash
# Download (on this machine) the Python 3.12 wheels that the H200 lacks for scripts/device_locust.sh:
# the service (fastapi, uvicorn with uvloop/httptools, pydantic, pydantic-settings, prometheus-client)
# and locust, with their dependencies, into .whl/ (git-ignored, ~20 MiB). Packages the device already
# has (numpy, onnx, sentencepiece, pytest and its dependencies) are left out: one version of each.
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" \
  fastapi==0.165.0 "uvicorn[standard]==0.54.0" pydantic==2.14.4 pydantic-settings==2.16.3 \
  prometheus-client==0.26.0 locust==2.47.0
rm -f "$dest"/pytest-*.whl "$dest"/pluggy-*.whl "$dest"/iniconfig-*.whl "$dest"/packaging-*.whl \
      "$dest"/pygments-*.whl "$dest"/numpy-*.whl
du -sh "$dest"
