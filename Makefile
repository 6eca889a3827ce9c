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

.PHONY: install protos check-protos run up observe test test-fast lint security bench bench-smoke quality soak helm-lint clean

install: $(VENV)/.installed

# One package per library and service (libs/*/, services/*/), each declaring only its own
# dependencies; all are installed editable, with the root project's dev tools. The root project
# `briefxai` is uninstalled first: the single package it used to be owned bin/briefxai, and replacing it
# after briefxai-cli is installed would delete that script.
# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# The ONNX export of the packaged model (int8, activation scales calibrated on the bundled sample
# conversations) is built locally once (no hub, no network), for the default backend.
PACKAGES := $(sort $(dir $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)))
$(VENV)/.installed: pyproject.toml $(addsuffix pyproject.toml,$(PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip uninstall --quiet --yes briefxai
	$(PY) -m pip install --quiet $(addprefix -e ,$(PACKAGES)) -e '.[dev]'
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

# helm-lint runs tests/deploy itself, so the rest of the suite leaves them out. Coverage of our packages,
# in the test process and in the services and CLIs the tests start, is printed and must reach the floor
# in pyproject.toml ([tool.coverage.report] fail_under).
test: install check-protos lint helm-lint security
	$(BIN)/pytest -q --ignore=tests/deploy --cov --cov-report=term

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
	$(BIN)/mypy libs/common libs/cli libs/sampledata libs/report services tests benchmarks tools
	$(BIN)/lint-imports
	$(BUF) lint
	tag=$$(git describe --tags --abbrev=0 2>/dev/null || true); \
	if [ -n "$$tag" ]; then $(BUF) breaking --against ".git#tag=$$tag"; else echo "buf breaking: no release tag yet"; fi

# Supply chain: every installed package's licence against the allow-list in tools/licenses.toml, and
# pip-audit's known vulnerabilities (skipped, saying why, where its service cannot be reached).
# (Our own code's security lint is ruff's S rules, in `make lint`.)
security: install
	$(PY) tools/check_licenses.py
	$(PY) tools/audit_dependencies.py

# The Helm chart (deploy/helm/briefxai): `helm lint --strict` and `helm template` with the default and the
# production values (Helm v4's SDK from helm-python-sdk: no helm binary), every manifest validated offline
# against the Kubernetes schemas (kubernetes-validate), then tests/deploy (probes against the real services).
helm-lint: install
	$(PY) -m tests.deploy.chart
	$(BIN)/pytest -q tests/deploy

bench: install
	$(BIN)/python -m benchmarks.run --full

bench-smoke: install
	$(BIN)/python -m benchmarks.run --smoke

# Re-measures the analysis defaults on the real dev chats and the sample: writes docs/quality.md.
quality: install
	$(BIN)/python -m benchmarks.quality

# Analyses under random faults for DURATION (30s, 5m, 1h; default 10m): services SIGKILLed and restarted,
# workers SIGSTOPped and resumed, the scripted LLM answering 429/500/hangs/bad JSON. Prints analyses
# completed, faults injected, conversations lost and duplicated, mismatches against a fault-free run;
# fails unless those are 0 (benchmarks/soak.py).
soak: install
	$(PY) -m benchmarks.soak --duration $(or $(DURATION),10m)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* build *.egg-info libs/*/*.egg-info services/*/*.egg-info
