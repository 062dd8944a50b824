# The README's two commands are `make demo` and `make test`; everything else is a helper.
# Both set up the venv themselves and start (and stop again) the local Kafka + Redis
# when KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are not given.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint format unit integration bench bench-scale stack-up stack-down schemas validate clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	stack/with-stack $(PY) -m orchestrator.cli demo

# lint first (seconds; mypy keeps its cache in .mypy_cache), then every test; stops at the first that fails
test: lint
	$(PY) -m pytest -q -ra

# ruff (lint + format check) and mypy, configured in pyproject.toml
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# rewrite the code in the house style (ruff format); `make lint` fails until this is done
format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: $(VENV)/.installed
	$(PY) -m pytest -q -m "not integration"

integration: $(VENV)/.installed
	$(PY) -m pytest -q -m integration

bench: $(VENV)/.installed
	stack/with-stack sh -c '$(PY) bench/bench_engine.py && $(PY) bench/bench_basket.py && $(PY) bench/bench_worker.py'

# timers and state at the issue's sizes: about 35 minutes
bench-scale: $(VENV)/.installed
	stack/with-stack $(PY) bench/bench_timers_state.py --timers 100000,1000000 --customers 1000000

validate: $(VENV)/.installed
	$(VENV)/bin/orchestrator validate journeys/

schemas: $(VENV)/.installed
	$(VENV)/bin/orchestrator schemas

stack-up:
	stack/stack up

stack-down:
	stack/stack down

clean:
	stack/stack down || true
	rm -rf $(VENV) .stack .orchestrator-data .pytest_cache .mypy_cache .ruff_cache
