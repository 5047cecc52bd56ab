# EMS — two commands: `make run` starts everything, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test setup migrate seed lint bench soak clean

## run: set everything up, then start every process behind the gateway on :8080
run: setup migrate seed
	@echo ""
	@echo "EMS is starting on http://localhost:8080"
	@$(BIN)/python -m web demo-logins
	@echo "Press Ctrl+C to stop."
	@echo ""
	$(BIN)/honcho start

## test: set up what the tests need, then run the whole suite
test: setup
	$(BIN)/python -m pytest

## setup: system packages, MariaDB + RabbitMQ up, virtualenv, browser libraries
setup:
	@bash scripts/bootstrap.sh

## migrate: create the databases and run every Alembic history
migrate:
	$(BIN)/python -m migrations upgrade

## seed: demo administrator, clients and devices, a demo tariff (lei, evening peak), two weeks
## of support conversations (with ratings, for the Support stats page), and a week of readings
## (safe to repeat: readings are identified by device and time, so a backfill adds only what is new)
seed:
	$(BIN)/python -m web seed
	$(BIN)/python -m monitor demo-tariff
	set -o pipefail; $(BIN)/python -m web demo-users | $(BIN)/python -m support seed-demo
	$(BIN)/python -m simulator backfill --days 7 $$($(BIN)/python -m web demo-devices | sed 's/^/--device /')

lint:
	$(BIN)/ruff check .

## bench: the benchmarks under bench/ (figures printed, nothing asserted; a few minutes each)
bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/chat.py

## soak: the whole system for 10 minutes under load, poison messages and killed workers; exits 1
## if a reading was lost or counted twice (SOAK_ARGS="--minutes 1 --devices 200 --sockets 200" to try)
soak: setup
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) node_modules web/static/vendor

include swarm/swarm.mk
