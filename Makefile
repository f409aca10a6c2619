# imgsearch: `make run` starts everything locally, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS := embedding,segmentation,index,catalog,workers,gateway,dev
STAMP := $(VENV)/.installed

# Test services: the environment first (CI and developers' machines), these defaults else.
export IMGSEARCH_TEST_MYSQL_URL ?= mysql+pymysql://root@127.0.0.1:3306/test
export IMGSEARCH_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help venv lint typecheck test test-fast web run bench clean

help:
	@echo "make run    start every service locally, ingest the demo gallery, print the URL"
	@echo "make test   virtual environment, lint, type check, the whole test suite"
	@echo "make bench  benchmarks (by hand), tables into docs/benchmarks.md"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@# The Compose Specification's JSON schema, for the deployment tests (shipped in this wheel).
	$(PIP) download --quiet --no-deps --dest $(VENV)/share docker-compose==1.29.2
	touch $(STAMP)

venv: $(STAMP)

web: $(STAMP)
	@if [ -f web/package.json ]; then \
	  cd web && { [ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check services gateway imgsearch tests bench
	$(VENV)/bin/mypy services gateway imgsearch

test: $(STAMP) web lint
	cd web && npm test
	$(VENV)/bin/pytest tests

# Unit tests only: no services, no browser.
test-fast: $(STAMP)
	$(VENV)/bin/pytest tests -m "not integration and not e2e and not slow"

run: $(STAMP) web
	$(VENV)/bin/imgsearch up

bench: $(STAMP)
	@for script in bench/*.py; do \
	  case $$script in bench/_*) continue;; esac; \
	  echo "== $$script"; $(PY) $$script || exit 1; \
	done

clean:
	rm -rf $(VENV) web/node_modules web/dist .mypy_cache .ruff_cache .pytest_cache
