# The two commands of the README: `make serve` and `make test`. Each creates .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch that pip takes from this machine's disk; other specs download CUDA builds
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[compress,service,bench,marian,dev]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: install serve test lint translate
install: $(STAMP)

serve: $(STAMP)
	$(PY) -m service

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

translate: $(STAMP)
	$(PY) -m compression translate
