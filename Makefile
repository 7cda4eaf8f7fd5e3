# Two commands: `make run` and `make test`. Both set everything up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck unit infra-lint bench bench-smoke clean

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	@$(BIN)/python -m devtools.localhost

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared

infra-lint:
	bash scripts/lint_infra.sh

unit: install
	$(BIN)/python -m pytest

test: lint typecheck infra-lint unit

bench: install
	$(BIN)/python -m bench.run

# a few seconds of load, no LiteLLM: proves the harness runs (CI runs it)
bench-smoke: install
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) .venv-tools .mypy_cache .ruff_cache
