# Two commands are all a user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint setup clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/depin demo

test: $(STAMP) lint
	bash tests/setup_browser.sh
	$(BIN)/python -m pytest -q

# Type and style checks of the product code (mypy --strict, ruff), part of `make test`.
lint: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check depin coordinator worker

# Speed, not correctness: the kernel against numpy/C/Python, then the whole system on loopback (benchmarks/RESULTS.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_kernel.py
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
