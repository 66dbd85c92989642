# Every target sets up the virtual environment from uv.lock first, so each one
# works on a fresh machine with nothing but Python and pip.

PYTHON ?= python3

# dlt reports anonymous usage over the internet by default; the demo, the tests
# and the benchmarks only ever talk to a local sandbox.
export RUNTIME__DLTHUB_TELEMETRY ?= false
UV ?= $(PYTHON) -m uv

.PHONY: setup demo test lint typecheck pytest bench clean

# Bytecode is compiled here because the command line, the benchmark and many
# tests start fresh Python processes, and where PYTHONDONTWRITEBYTECODE is set
# (as on these machines) each would compile dlt and its dependencies again,
# which nearly doubles the time the command line takes to start (1.9 s
# against 1.1).
setup:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	$(UV) run --frozen python -m compileall -q connector sandbox bench pipelines reliability >/dev/null

demo: setup
	$(UV) run --frozen logfire-sync demo

lint: setup
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

typecheck: setup
	$(UV) run --frozen mypy

pytest: setup
	$(UV) run --frozen pytest

test: lint typecheck pytest

bench: setup
	$(UV) run --frozen python -m bench

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
