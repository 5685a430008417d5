# The commands of the README: `make serve`, `make serve-ray` and `make test`. Each creates .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
EXPORT_DIR ?= build/onnx
EXPORT_STAMP := $(EXPORT_DIR)/.exported

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch that pip takes from this machine's disk; other specs download CUDA builds
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[compress,service,bench,marian,dev,ray]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: install serve serve-ray test lint translate export bench-speed variants
install: $(STAMP)

serve: $(STAMP) $(EXPORT_STAMP)
	$(PY) -m service

# The same service on Ray Serve: a local Ray cluster, TZIP_RAY_REPLICAS translator replicas (default 2) with
# the variants multiplexed over them, on TZIP_HOST:TZIP_PORT (default 127.0.0.1:8000). Ctrl-C stops both.
serve-ray: $(STAMP) $(EXPORT_STAMP)
	$(PY) -c "import ray.serve" 2>/dev/null || $(PY) -m pip install -q -e '.[ray]'
	$(PY) -m service.ray_serve

# ONNX exports of the base model and every variant under models/ (+ fp16 and int8-dynamic), redone when
# a model or the export code changes; `make serve` serves them.
export: $(EXPORT_STAMP)
$(EXPORT_STAMP): $(STAMP) $(shell find models -name manifest.json 2>/dev/null) \
		$(wildcard compression/export/*.py) compression/runtime/graphs.py compression/runtime/graphs_compact.py \
		compression/runtime/graphs_attention.py compression/runtime/onnx_format.py
	$(PY) -m compression export --all --out $(EXPORT_DIR)
	# fp16 and int8 are graph-only variants of the base: measure their BLEU through ONNX Runtime (~1 min)
	$(PY) -m compression export --variant fp16 --variant int8 --evaluate --out $(EXPORT_DIR)
	touch $@

# CPU speed benchmark (batch-1 latency, batch-32 throughput: ONNX Runtime variants, PyTorch eager, CTranslate2)
bench-speed: $(EXPORT_STAMP)
	$(PY) benchmarks/speed/bench.py --device cpu --export-dir $(EXPORT_DIR)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

translate: $(STAMP)
	$(PY) -m compression translate

# Post-training variants (seconds each on the CPU; not committed): fp16, int8, and the study's no-retraining points
POST_TRAINING := fp16 int8 kmeans-8bit-pt kmeans-4bit-pt kmeans-2bit-pt binary-pt pruned-50-pt pruned-90-pt
variants: $(STAMP)
	for v in $(POST_TRAINING); do $(PY) -m compression compress --config configs/variants/$$v.toml --out models/variants/$$v --device cpu || exit 1; done
