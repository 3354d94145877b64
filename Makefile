# plantfed developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint testbin proto crds bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/plantfed simulate --out runs/demo

testbin:
	hack/testbin/build.sh

proto: $(STAMP)
	$(BIN)/python -m plantfed.contract.wire.generate

crds: $(STAMP)
	$(BIN)/plantfed crds --out crds
	cp crds/*.yaml charts/plantfed-hub/files/crds/

# Static checks, fail-fast and without a cluster (docs/development.md says what each one guards). Uses the
# venv's tools as they are (run `make venv` first); the sources come from this checkout, not the install.
lint: export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m plantfed.contract.wire.generate --check
	$(BIN)/python -m plantfed.contract.api.crdgen --out crds --check
	$(BIN)/python -m plantfed.contract.api.crdgen --out charts/plantfed-hub/files/crds --check
	$(BIN)/python dashboards/build_dashboard.py --check

test: $(STAMP) testbin
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -rs

test-fast: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -rs -m "not controlplane"

# Flower pins protobuf < 7, so the comparison runs it from its own venv, outside the repo.
# tests/bench runs every script below in a tiny mode, so none of them can rot unnoticed.
FLWR_VENV ?= $(HOME)/.cache/plantfed/bench-flwr-1.42.0
bench: $(STAMP)
	test -x $(FLWR_VENV)/bin/python || ($(PY) -m venv $(FLWR_VENV) && $(FLWR_VENV)/bin/pip install -q flwr==1.42.0 safetensors==0.8.0)
	$(BIN)/python bench/bench_aggregate.py --plants 17 --size-mb 400 --flwr-python $(FLWR_VENV)/bin/python
	$(BIN)/python bench/bench_upload.py --size-mb 1024 --repeat 3
	$(BIN)/python bench/bench_plant_memory.py --size-mb 200

clean:
	rm -rf $(VENV) runs .pytest_cache
