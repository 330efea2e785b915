# The two quick-start commands (README): `make demo` and `make test`.
# Both create the virtual environment .venv on first use; only Python 3.11 and pip are needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow test-all bench mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/alexnet demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m 'slow or not slow'

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; docs/testing.md), one process:
# `make mutate MUTANTS='alexnet.net.lrn.*'` checks one module.  Not part of `make test`.
MUTANTS ?=
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/python tools/mutation_score.py

clean:
	rm -rf $(VENV) demo build mutants *.egg-info src/*.egg-info
