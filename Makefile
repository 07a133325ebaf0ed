# fraudguard — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
DATA_DIR ?= data
PYTEST_ARGS ?=

.PHONY: run test lint protos check-protos openapi bench bench-load bench-trainer demo-model clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

## run: set up, make a demo model bundle if none is promoted, serve on embedded defaults
run: $(VENV)/.installed
	$(BIN)/fraudguard models demo --data-dir $(DATA_DIR) --if-missing
	$(BIN)/fraudguard serve --data-dir $(DATA_DIR) --metrics-listen 127.0.0.1:9464

## test: set up and run the whole suite (buf lint, stub check, ruff, mypy, pytest)
test: $(VENV)/.installed lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed $(BUF)
	$(BUF) lint
	$(PY) -m fraudguard.proto.generate --check
	$(PY) -m gateway.openapi --check
	$(BIN)/ruff check .
	$(BIN)/mypy

## protos: regenerate the committed stubs after editing proto/
protos: $(VENV)/.installed $(BUF)
	$(BUF) lint
	$(PY) -m fraudguard.proto.generate

## openapi: rewrite the committed OpenAPI document (gateway/openapi.json) after changing the REST API
openapi: $(VENV)/.installed
	$(PY) -m gateway.openapi

## bench: pytest-benchmark suites (kernels, model, pipeline)
bench: $(VENV)/.installed
	$(BIN)/pytest benchmarks --benchmark-enable --benchmark-only -p no:cacheprovider -o testpaths=benchmarks

## bench-trainer: time and peak memory of generate, train and evaluate at 1 M and 5 M payments
bench-trainer: $(VENV)/.installed
	$(PY) -m benchmarks.trainer_scale --sizes 1000000 5000000 --output results/trainer_scale.json

## bench-load: the gRPC load generator against a server it starts itself
bench-load: $(VENV)/.installed
	$(BIN)/fraudguard bench --spawn-server --data-dir $(DATA_DIR) --scenario all --output results/load.json

## bench-rest: gRPC unary beside REST /v1/score through a gateway, both started by the load generator
.PHONY: bench-rest
bench-rest: $(VENV)/.installed
	$(BIN)/fraudguard bench --spawn-server --data-dir $(DATA_DIR) --scenario rest --duration 10 --output results/load_rest.json

## bench-recording: the scoring server with recording off, then on (PostgreSQL at FRAUDGUARD_BENCH_DSN, default the
## local one): capacity, open-loop p99 and the rows/s the writer stores; then the hot path's per-call p50/p99
## with and without recording, the writer running (results/recording.json, results/hot_path_recording.json)
.PHONY: bench-recording
bench-recording: $(VENV)/.installed
	$(PY) -m benchmarks.recording_bench --output results/recording.json
	$(PY) -m benchmarks.hot_path_recording --output results/hot_path_recording.json

clean:
	rm -rf $(VENV) .tools build *.egg-info .pytest_cache .mypy_cache .ruff_cache
