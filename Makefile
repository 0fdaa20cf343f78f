# relsim studio: `make run` starts the app with demo data; `make test` runs lint and tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint install install-dev

# `make run` and `make test` may start together on a fresh clone: one installs while the
# other waits on the lock, then finds the work done.
LOCKED := flock .install.lock sh -c

$(VENV)/.installed: requirements.txt
	$(LOCKED) '[ "$@" -nt requirements.txt ] || { \
	  { test -x $(PY) || $(PYTHON) -m venv $(VENV); } && \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -r requirements.txt && touch $@; }'

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(LOCKED) '[ "$@" -nt requirements-dev.txt ] && [ "$@" -nt $(VENV)/.installed ] || { \
	  $(PY) -m pip install -q -r requirements-dev.txt && touch $@; }'

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --once
	$(PY) manage.py devserver

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy ml core curation captions training evaluation config

# On PostgreSQL, the tests marked both_databases (concurrency, review integrity, jobs) run
# a second time on the default SQLite.
# The suite runs in PYTEST_WORKERS processes (pytest-xdist), each with a run folder, test
# database and Redis key prefix of its own; a test file stays in one process.
PYTEST_WORKERS ?= 2
test: lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile
	@case "$$DATABASE_URL" in postgres*) \
	  echo "Again on SQLite: the tests marked both_databases"; \
	  DATABASE_URL= RELSIM_TESTS_ON_SQLITE=1 $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile -m both_databases -p no:cacheprovider;; esac
