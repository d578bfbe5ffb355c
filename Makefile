# The two commands of the README, and their helpers. Everything installs itself.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run demo test lint unit bench install install-dev lock browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# Installs come from the lock files (exact versions, every platform): make lock refreshes
# them from pyproject.toml; the project itself goes in last, editable and without deps.
$(RUN_STAMP): requirements/demo.txt pyproject.toml | $(PY)
	$(VENV)/bin/pip install -q -r requirements/demo.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

$(DEV_STAMP): requirements/dev.txt pyproject.toml | $(PY)
	$(VENV)/bin/pip install -q -r requirements/dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

## make lock: resolve pyproject.toml again into requirements/ (server.txt: the server alone,
## demo.txt: + the demo extra, for make run; dev.txt: + the dev extra, for make test),
## keeping every pin that still fits; make lock UPGRADE=1 takes the newest releases allowed
UV_VERSION ?= 0.13.9
UV := $(VENV)/bin/uv
LOCK := $(UV) pip compile -q pyproject.toml --universal --python-version 3.11 \
	--annotation-style line --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: | $(PY)
	@test -x $(UV) || $(VENV)/bin/pip install -q "uv==$(UV_VERSION)"
	$(LOCK) --extra dev -o requirements/dev.txt
	$(LOCK) --extra demo -c requirements/dev.txt -o requirements/demo.txt
	$(LOCK) -c requirements/dev.txt -o requirements/server.txt

## make run: the whole product with demo traffic on embedded defaults (Ctrl-C stops it all):
## the web server, the Celery worker with beat, and the simulator (7 days of history, then
## about one order a second; SIM_BACKFILL_DAYS, SIM_RATE, SIM_SPEED, SIM_SCENARIO change it)
run: $(RUN_STAMP)
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py demo_setup
	HOST=$(HOST) PORT=$(PORT) SIM_URL=http://$(HOST):$(PORT) $(VENV)/bin/honcho -f Procfile start

## make demo: the simulator's live trickle against a server already running
## (make demo URL=https://observatory.example.com TOKEN=<ingest token> SCENARIO=chaos)
URL ?= http://$(HOST):$(PORT)
TOKEN ?= $(shell cat $${OBSERVATORY_DATA_DIR:-.data}/demo-token 2>/dev/null)
SCENARIO ?= normal
RATE ?= 1
SPEED ?= 1
demo: $(RUN_STAMP)
	@test -n "$(TOKEN)" || { echo "make demo needs TOKEN=<ingest token> (make run writes .data/demo-token)"; exit 2; }
	$(PY) manage.py simulate --url $(URL) --token $(TOKEN) --scenario $(SCENARIO) --rate $(RATE) --speed $(SPEED) --wait 30 --forever

## make test: lint, types, import contracts, migrations check and the whole pytest suite
test: $(DEV_STAMP) browser lint unit

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy tracing observatory
	$(VENV)/bin/lint-imports
	DJANGO_SETTINGS_MODULE=observatory.test_settings $(PY) manage.py makemigrations --check --dry-run

unit: $(DEV_STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## Debian's chromium for the browser tests (Playwright's own download does not work here)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## make bench: every benchmark under bench/, one after the other (an hour and 30 GB at full
## size); BENCHES="ingest stitch" picks some. Each makes its own scratch database on
## BENCH_DB's PostgreSQL server. Run them on an otherwise idle machine.
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/observatory
BENCHES ?= ingest logs decode_otlp stitch kpis lookup reconciliation alerts_latency truth metrics
bench: $(DEV_STAMP)
	@for b in $(BENCHES); do \
	  echo "== bench/$$b.py"; \
	  DATABASE_URL=$(BENCH_DB) SECRET_KEY=$${SECRET_KEY:-bench-$$(date +%s%N)} $(PY) bench/$$b.py || exit 1; \
	done

clean:
	rm -rf .data $(VENV)
