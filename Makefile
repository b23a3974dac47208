# Two commands matter on a fresh machine: `make run` and `make test` (README.md).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; override (e.g. TORCH=torch) on a machine with GPUs.
TORCH ?= torch==2.13.0
EXAMPLE ?= jobs/digits/torch-mlp.yaml

.PHONY: setup run test test-unit soak bench down clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[torch,tensorflow,tune,dev]"
	touch $@

# Sets everything up, starts the embedded local Ray cluster, trains the main example.
run: setup
	$(BIN)/orch up
	$(BIN)/orch submit $(EXAMPLE) --wait
	$(BIN)/orch results digits-mlp

# The whole suite (unit, integration, end-to-end) on one shared local cluster.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-unit: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# Slow soak tests, kept out of `make test`, and README's reliability table (printed last).
soak: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m soak --ignore=tests/reliability
	$(BIN)/python -m tests.reliability.report

bench: setup
	$(BIN)/python benchmarks/allocator_scale.py
	$(BIN)/python benchmarks/scheduling_trace.py
	$(BIN)/python benchmarks/simulate_scale.py
	$(BIN)/python benchmarks/hetero_trace.py
	$(BIN)/python benchmarks/forecast_scale.py
	$(BIN)/python benchmarks/submit_latency.py
	$(BIN)/python benchmarks/list_scale.py
	$(BIN)/python benchmarks/control_step.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py

down:
	-$(BIN)/orch down

clean: down
	rm -rf $(VENV) *.egg-info
