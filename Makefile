# Tally: `make` lists the targets. Knobs are variables: make test PYTEST_ARGS=-x
SHELL := /usr/bin/env bash -euo pipefail -c
.DEFAULT_GOAL := help

ENV ?= local
UV_VERSION ?= 0.13.9
PYTEST_ARGS ?=

# uv comes from PATH, or is bootstrapped into .tools/ with the machine's python3.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --locked --no-progress
# Commands the app tests need, and the Debian packages that provide them.
TEST_PACKAGES := /usr/lib/postgresql/*/bin/pg_basebackup=postgresql redis-server=redis-server \
  /usr/sbin/pgbouncer=pgbouncer memcached=memcached swift-ring-builder=swift \
  swift-proxy-server=swift-proxy swift-account-server=swift-account \
  swift-container-server=swift-container swift-object-server=swift-object

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --no-progress
	touch $@

.PHONY: venv
venv: .venv/.synced ## Create the virtualenv from uv.lock

.PHONY: system-packages
system-packages: ## Install (as root on Debian/Ubuntu) or name the system packages the tests need
	scripts/ensure-packages $(TEST_PACKAGES)

.PHONY: lint
lint: venv ## Lint and check formatting (ruff)
	$(RUN) ruff check app
	$(RUN) ruff format --check app

.PHONY: fmt
fmt: venv ## Format the code and apply safe lint fixes
	$(RUN) ruff format app
	$(RUN) ruff check --fix app

.PHONY: test
test: system-packages lint ## Run every check: lint, then the tests on real servers, with coverage
	$(RUN) coverage run -m pytest $(PYTEST_ARGS)
	$(RUN) coverage report

.PHONY: provision
provision: ## Stand up the whole stack for ENV (not built yet: see ansible/README.md)
	@echo "make provision ENV=$(ENV): the provisioning playbooks are not built yet." >&2
	@echo "Until they land, 'make test' runs the app against real PostgreSQL and Redis." >&2
	@exit 2

.PHONY: clean
clean: ## Remove the virtualenv, tool cache and coverage data
	rm -rf .venv .tools .coverage .pytest_cache .ruff_cache
