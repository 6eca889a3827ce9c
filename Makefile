# BriefXAI — one file to install, generate, run, test and lint from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Our protos only: protos/google/ holds Google's, shipped for other languages' clients; Python gets
# their generated code from googleapis-common-protos.
PROTO_SRC := $(shell find protos/briefxai -name '*.proto' | sort)
BUF := node_modules/.bin/buf
PROTO_OUT := libs/proto
export GRPC_VERBOSITY ?= ERROR
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install protos check-protos run up observe test test-fast lint bench bench-smoke quality helm-lint clean

install: $(VENV)/.installed

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# The ONNX export of the packaged model (int8, activation scales calibrated on the bundled sample
# conversations) is built locally once (no hub, no network), for the default backend.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m briefxai_embedding.onnx_export
	touch $@

protos: install
	rm -rf $(PROTO_OUT)/briefxai
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -I protos \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
	  --grpc_python_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) $(PROTO_SRC)
	find $(PROTO_OUT)/briefxai -type d -exec touch {}/__init__.py \;

# Fails when the committed generated code differs from what the protos produce now.
check-protos: install
	tmp=$$(mktemp -d) && \
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -I protos \
	  --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_SRC) && \
	find $$tmp/briefxai -type d -exec touch {}/__init__.py \; && \
	diff -r $$tmp/briefxai $(PROTO_OUT)/briefxai && echo "generated code is up to date"

run: install
	$(BIN)/briefxai demo

up: install
	$(BIN)/briefxai up

# The suite and a Prometheus (Debian's `prometheus` package) scraping it with the alert rules of
# deploy/prometheus/; prints the Prometheus URL; Ctrl-C stops both. See deploy/observe.sh.
observe: install
	BIN=$(BIN) deploy/observe.sh

test: install check-protos lint
	$(BIN)/pytest -q

test-fast: install $(BUF)
	$(BIN)/pytest -q -m "not e2e"

# buf (from npm, pinned in package-lock.json) lints the protos.
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

# Style and types, the import boundaries (.importlinter), and the protos: buf lint, and buf breaking
# against the newest release tag once one exists.
lint: install $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common libs/cli libs/sampledata libs/report services tests benchmarks
	$(BIN)/lint-imports
	$(BUF) lint
	tag=$$(git describe --tags --abbrev=0 2>/dev/null || true); \
	if [ -n "$$tag" ]; then $(BUF) breaking --against ".git#tag=$$tag"; else echo "buf breaking: no release tag yet"; fi

bench: install
	$(BIN)/python -m benchmarks.run --full

bench-smoke: install
	$(BIN)/python -m benchmarks.run --smoke

# Re-measures the analysis defaults on the real dev chats and the sample: writes docs/quality.md.
quality: install
	$(BIN)/python -m benchmarks.quality

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache build *.egg-info
