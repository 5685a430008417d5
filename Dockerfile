# syntax=docker/dockerfile:1
# The tzip translation service on the GPU. Two stages:
#   export  - torch (CPU build) turns the shipped model and its compressed variants into ONNX;
#   runtime - CUDA runtime + onnxruntime-gpu + FastAPI, no torch; runs as a non-root user.
# Build and run (from the repository root):  docker compose -f docker/compose.yaml up --build
# Without a GPU the same image serves on the CPU (ONNX Runtime reports the provider that really ran).

FROM python:3.11-slim-bookworm AS export
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY docker/requirements-export.txt docker/
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-cache-dir -r docker/requirements-export.txt
COPY pyproject.toml ./
COPY compression compression
COPY models models
RUN python -m compression export --all --out /export

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS runtime
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
WORKDIR /app
COPY docker/requirements-service.txt docker/
RUN pip install --no-cache-dir -r docker/requirements-service.txt
COPY pyproject.toml ./
# the torch-free runtime package only: the offline packages (train, compress, export, ...) stay in the export stage
COPY compression/__init__.py compression/
COPY compression/runtime compression/runtime
COPY service service
# the service's code only (its dependencies are pinned above); fail the build if anything pulls in torch
RUN pip install --no-cache-dir --no-deps . \
 && python -c "import sys, service.main, compression.runtime.translator; assert 'torch' not in sys.modules, 'torch imported'"
COPY --from=export /export /app/build/onnx
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tzip
USER 10001:10001
ENV TZIP_HOST=0.0.0.0 TZIP_PORT=8000 TZIP_MODEL_ROOT=/app/build/onnx TZIP_DEVICE=auto
EXPOSE 8000
# healthy = ready: the default variant is loaded and warmed up (compose starts locust after that)
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "service"]
