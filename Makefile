# The project's tasks. `make run` and `make test` are all a new machine needs (with Python 3.11+).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv install run test lint

venv install: $(STAMP)

# Reinstall only when a requirements file or a package's metadata (the gateway's, the example
# plugin's) changed since the last install.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml examples/gateway-lmdb-store/pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(STAMP)
	$(VENV)/bin/python scripts/run-dev

# The browser client's unit tests (Node's own runner, no packages), then the Python suite, which
# includes the client's browser tests in Chromium.
test: $(STAMP)
	node --test tests/client/
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . scripts/run-dev scripts/screenshot-demo
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
