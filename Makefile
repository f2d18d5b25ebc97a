# Two commands set everything up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest-xdist workers (each its own Prefect server and PostgreSQL
# template); WORKERS=0 runs it in one process.
WORKERS ?= 2

.PHONY: install demo test test-fast test-deep postgres bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/handoff demo

# PostgreSQL backs half of the storage tests; start the local cluster if it is installed and down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
	  command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1 && \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start && \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; } || \
	  echo "PostgreSQL is not available: its tests will skip (and fail under CI=true)"

test: install postgres
	$(BIN)/python -m pytest -n $(WORKERS) --dist worksteal $(PYTEST_ARGS)

# The fast tests only: no servers, no subprocesses.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# A deeper search by the property tests (Hypothesis), say before a release: DEEP times their examples, with no
# per-test time limit. The files that read HANDOFF_PROPERTY_SCALE are the ones it runs.
DEEP ?= 20
test-deep: install postgres
	HANDOFF_PROPERTY_SCALE=$(DEEP) $(BIN)/python -m pytest -o timeout=0 \
	  $$(grep -l HANDOFF_PROPERTY_SCALE tests/test_*.py) $(PYTEST_ARGS)

bench: install postgres
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.scoring
	$(BIN)/python -m bench.crm_sync
	$(BIN)/python -m bench.routing_sla
	$(BIN)/python -m bench.handoff_latency

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Exact versions for a reproducible install; regenerate with 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' | sort -f; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .handoff .pytest_cache
