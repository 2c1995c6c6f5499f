# consentry — two commands: `make demo` runs the service, `make test` runs every test.
# `make demo PORT=8100` serves the demo on 8100 (meetings) and 8101 (music; MUSIC_PORT=… to
# choose it too).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL := postgresql://postgres@127.0.0.1:5432/test
PORT ?= 8000
MUSIC_PORT ?=

.PHONY: demo test lint bench clean install screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -m consentry.demo --port $(PORT) $(if $(MUSIC_PORT),--music-port $(MUSIC_PORT))

# The documentation's images (docs/img), made from the demo's data in headless Chromium.
screenshots: $(STAMP)
	$(BIN)/python tests/web/screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

test: lint
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests"; \
			(apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1)) \
				|| echo "Could not install chromium: the browser tests will be skipped"; \
		else \
			echo "/usr/bin/chromium is missing and this is not root: the browser tests will be skipped"; \
		fi; \
	fi
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "PostgreSQL answers at 127.0.0.1:5432: running the PostgreSQL tests"; \
		export CONSENTRY_TEST_POSTGRES_URL='$(PG_URL)'; \
	else \
		echo "PostgreSQL does not answer at 127.0.0.1:5432: the PostgreSQL tests will be skipped"; \
	fi; \
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache consentry.db* demo
