# The two commands of the README: `make demo` and `make test`. Each builds .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pwh demo

# DuckDB 2.0's bindings print a "nanobind: leaked ..." report at interpreter exit (its
# module-level objects), after pytest's summary; it is dropped so the summary stays the
# last line. pipefail keeps pytest's exit status.
test: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo
	set -o pipefail; $(BIN)/python -m pytest -q 2>&1 | grep -v -E '^(nanobind: |[[:space:]]*- (leaked |\.\.\. skipped remainder)|See https://nanobind)'

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python -m bench
	$(BIN)/python -m bench.shards

clean:
	rm -rf $(VENV) warehouse.duckdb* .pwh
