# Tally: `make` lists the targets. Knobs are variables: make test PYTEST_ARGS=-x
SHELL := /usr/bin/env bash -euo pipefail -c
.DEFAULT_GOAL := help

ENV ?= local
UV_VERSION ?= 0.13.9
PYTEST_ARGS ?=
# The replica counts the app suite runs with, one run each.
TEST_REPLICA_COUNTS ?= 2 1 0
E2E_ARGS ?=
# cloud-up and cloud-down against moto: in make test beside the app's suites, not in make e2e.
CLOUD_TEST := ansible/tests/test_cloud.py
# Scripts a role installs are Python without the .py suffix: named one by one.
PYTHON_DIRS := app ansible/tests ansible/plugins deploy/capacity loadtests ansible/roles/nginx/files/tally-upstream-check

# uv comes from PATH, or is bootstrapped into .tools/ with the machine's python3.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --locked --no-progress
# Commands the app tests need, and the Debian packages that provide them.
TEST_PACKAGES := /usr/lib/postgresql/*/bin/pg_basebackup=postgresql redis-server=redis-server \
  /usr/sbin/pgbouncer=pgbouncer memcached=memcached swift-ring-builder=swift \
  swift-proxy-server=swift-proxy swift-account-server=swift-account \
  swift-container-server=swift-container swift-object-server=swift-object \
  ssh=openssh-client openssl=openssl

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml deploy/capacity/pyproject.toml uv.lock
	$(UV) sync --locked --no-progress
	touch $@

.PHONY: venv
venv: .venv/.synced ## Create the virtualenv from uv.lock

.PHONY: system-packages
system-packages: ## Install (as root on Debian/Ubuntu) or name the system packages the tests need
	scripts/ensure-packages $(TEST_PACKAGES)

.PHONY: lint
lint: venv ## Lint: ruff (Python), yamllint, ansible-lint (production profile)
	$(RUN) ruff check $(PYTHON_DIRS)
	$(RUN) ruff format --check $(PYTHON_DIRS)
	$(RUN) yamllint --strict .
	ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-lint -q

.PHONY: fmt
fmt: venv ## Format the code and apply safe lint fixes
	$(RUN) ruff format $(PYTHON_DIRS)
	$(RUN) ruff check --fix $(PYTHON_DIRS)

.PHONY: test
test: system-packages lint ## Run every check: lint, the app's tests on real servers, the cloud check, then e2e
	$(RUN) coverage erase
	@# The app suite once per replica count: routing must hold for any number of replicas. The
	@# cloud check (mostly waiting on its local AWS API) runs beside it; its report follows.
	@mkdir -p build
	$(RUN) pytest $(CLOUD_TEST) -p no:cacheprovider -rA $(PYTEST_ARGS) > build/test-cloud.log 2>&1 & cloud=$$!; \
	for count in $(TEST_REPLICA_COUNTS); do echo "app tests with $$count replica(s)"; \
	  TALLY_TEST_REPLICAS=$$count $(RUN) coverage run --append -m pytest app/tests $(PYTEST_ARGS) \
	  || { kill $$cloud; exit 1; }; done; \
	status=0; wait $$cloud || status=$$?; cat build/test-cloud.log; exit $$status
	$(RUN) coverage report
	$(RUN) pytest deploy/capacity/tests loadtests/tests $(PYTEST_ARGS)
	$(MAKE) e2e

.PHONY: e2e
e2e: venv ## Provision the `test` fleet from nothing, verify it end to end, then remove it
	$(RUN) pytest ansible/tests --ignore=$(CLOUD_TEST) -p no:cacheprovider -rA --durations=15 $(E2E_ARGS)

.PHONY: test-cloud
test-cloud: venv ## make cloud-up and cloud-down against a local AWS API (moto on 127.0.0.1)
	$(RUN) pytest $(CLOUD_TEST) -p no:cacheprovider -rA $(PYTEST_ARGS)

# Provisioning: every environment is a folder deploy/ENV with an inventory and group_vars.
DEPLOY := deploy/$(ENV)
ENVIRONMENTS = $(patsubst deploy/%/inventory.yml,%,$(wildcard deploy/*/inventory.yml))
VAULT_PASSWORD := $(DEPLOY)/.vault-password
# SYNC=n overrides the capacity model's synchronous_standbys for one run (make replication).
SYNC ?=
PLAYBOOK := ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-playbook -i $(DEPLOY)/inventory.yml \
  --vault-password-file $(VAULT_PASSWORD) $(if $(SYNC),-e postgresql_synchronous_standbys=$(SYNC))
# The web hosts run Debian 13's Python; their wheels are fetched here, since they cannot reach
# PyPI (and production should not depend on it).
WHEEL_PYTHON ?= 3.13
# pip does not widen a manylinux tag to older ones by itself: name each one hosts accept.
# WHEEL_ARCH is the hosts' architecture (x86_64 or aarch64): this machine's by default, which
# is what local containers run; set it when provisioning VMs of another kind.
WHEEL_ARCH ?= $(shell uname -m)
WHEEL_PLATFORMS ?= manylinux_2_28_$(WHEEL_ARCH) manylinux_2_17_$(WHEEL_ARCH) manylinux2014_$(WHEEL_ARCH)
PIP_VERSION ?= 25.3
# What scripts/build-release and scripts/download-wheels read.
WHEEL_ENV = UV=$(abspath $(UV)) WHEEL_PYTHON=$(WHEEL_PYTHON) WHEEL_PLATFORMS="$(WHEEL_PLATFORMS)" PIP_VERSION=$(PIP_VERSION)

.PHONY: check-env
check-env:
	@[ -f $(DEPLOY)/inventory.yml ] || { echo "Unknown ENV '$(ENV)': there is no $(DEPLOY)/inventory.yml." \
	  "Environments: $(ENVIRONMENTS)" >&2; exit 2; }
	@# An environment with a local fleet (fleet_name in its settings) needs Docker, and makes
	@# its own secrets; any other must bring its vault password.
	@if grep -qs '^fleet_name:' $(DEPLOY)/group_vars/all/*.yml; then scripts/ensure-docker; \
	  PATH="$$PWD/.venv/bin:$$PATH" scripts/local-vault $(DEPLOY); \
	elif [ ! -s $(VAULT_PASSWORD) ]; then echo "No vault password for ENV=$(ENV): put it in $(VAULT_PASSWORD)" \
	  "(see deploy/README.md)." >&2; exit 2; fi

# A release: the app's wheel and its locked dependencies' wheels in one reproducible archive,
# named by its content (scripts/build-release). REF=<git ref> builds a committed version
# instead of the working tree.
REF ?=
.PHONY: wheels
wheels: venv ## Build the release: the app's wheel and its locked dependencies' wheels (REF=<git ref>)
	$(WHEEL_ENV) scripts/build-release $(REF)

# The capacity model (deploy/capacity, a package in the venv): every sizing value the roles use,
# from each environment's capacity.yml, calibration.yml and inventory.
CAPACITY := $(RUN) python -m capacity
CAPACITY_ENVS = $(patsubst deploy/%/capacity.yml,%,$(wildcard deploy/*/capacity.yml))

.PHONY: capacity
capacity: venv ## Run the capacity model: build/capacity/capacity.xlsx (live formulas) and a table per ENV
	$(CAPACITY) $(CAPACITY_ENVS) --out build/capacity

# Load tests (loadtests/): Locust against ENV's local fleet on 127.0.0.1, a report folder under
# build/ENV/loadtest/. Other shapes and knobs: make loadtest LOADTEST_ARGS="--shape soak".
LOADTESTS := $(RUN) python -m loadtests
LOADTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: loadtest
loadtest: venv ## Step load up to 1.2x the predicted capacity; report, verdicts (exit 1 if one fails)
	$(LOADTESTS) $(ENV) --shape step $(LOADTEST_ARGS)

.PHONY: bench
bench: venv ## Tuned vs naive deployment vs trivial view vs pgbench, side by side (build/ENV/bench/)
	$(LOADTESTS).bench $(ENV) $(BENCH_ARGS)

.PHONY: bench-sync
bench-sync: venv ## Asynchronous vs synchronous replication at the target load, in rounds (build/ENV/replication/)
	$(LOADTESTS).replication $(ENV) $(BENCH_ARGS)

# Failure drills (loadtests/drills.py): the survey load, one fault, the heal, the ledger.
DRILL_ARGS ?=
DRILL_NAMES = $(shell $(RUN) python -c 'from loadtests.drills import DRILLS; print(*DRILLS)' 2>/dev/null)

.PHONY: drill
drill: venv ## Run one failure drill under the target load: make drill NAME=web-kill [ENV=local]
	@[ -n "$(NAME)" ] || { echo "Name a drill: make drill NAME=<one of: $(DRILL_NAMES)>" >&2; exit 2; }
	$(LOADTESTS).drills $(ENV) $(NAME) $(DRILL_ARGS)

.PHONY: drills
drills: venv ## Run every failure drill, one after another; report in build/ENV/drills/
	$(LOADTESTS).drills $(ENV) $(DRILL_ARGS)

.PHONY: profile
profile: venv check-env ## Sample the first web host's workers with py-spy under the target load: build/ENV/profile/
	$(LOADTESTS).profile $(ENV) $(PROFILE_ARGS)

# What make profile runs while the load does (ansible/profile.yml): py-spy from uv.lock's profile
# group, fetched here for the hosts' platform like the release's wheels.
# PROFILE_TAGS: install, sample, or both (empty); PROFILE_HOST: a web host (default: the first).
PROFILE_OUT ?=
PROFILE_SECONDS ?= 30
PROFILE_RATE ?= 100
PROFILE_TAGS ?=
PROFILE_HOST ?=
.PHONY: profile-record
profile-record: venv check-env
	$(WHEEL_ENV) $(PLAYBOOK) ansible/profile.yml $(if $(PROFILE_TAGS),--tags $(PROFILE_TAGS)) \
	  $(if $(PROFILE_HOST),-e profile_host=$(PROFILE_HOST)) $(if $(PROFILE_OUT),-e profile_out=$(PROFILE_OUT)) \
	  -e '{"profile_seconds": $(PROFILE_SECONDS), "profile_rate": $(PROFILE_RATE)}'

.PHONY: calibrate
calibrate: venv ## Measure the service times on ENV's fleet into deploy/ENV/calibration.yml
	$(LOADTESTS) $(ENV) --shape calibration $(LOADTEST_ARGS)
	@echo "Calibrated. Apply any sizing that changed with: make provision ENV=$(ENV)"

.PHONY: provision
provision: venv check-env wheels ## Stand up (or converge) the whole stack for ENV: make provision [ENV=local]
	@# The model's checks stop a provision whose sizing cannot work, before any host changes;
	@# otherwise its role variables land in $(DEPLOY)/group_vars/all/capacity.generated.yml.
	$(CAPACITY) $(ENV) --out build/$(ENV)/capacity --group-vars
	$(PLAYBOOK) ansible/site.yml

# Releases: the web hosts roll one batch at a time (BATCH hosts, 1 by default), each drained
# from the load balancers first; ansible/deploy.yml and ansible/roll.yml.
BATCH ?=
# BATCH: web hosts rolled at a time; GATE: seconds a host may take to pass its readiness gate.
ROLL := $(if $(BATCH),-e deploy_batch=$(BATCH)) $(if $(GATE),-e app_gate_timeout=$(GATE))

.PHONY: deploy
deploy: venv check-env wheels ## Roll a new release out host by host: make deploy [ENV=local] [REF=<git ref>] [BATCH=1] [GATE=60]
	$(PLAYBOOK) ansible/deploy.yml $(ROLL)

.PHONY: rollback
rollback: venv check-env ## Roll every web host back to the release it served before: make rollback [ENV=local]
	$(PLAYBOOK) ansible/deploy.yml -e deploy_rollback=true $(ROLL)

# Restores: into the scratch host of the inventory's `restore` group, never a database host.
TARGET ?= latest
SET ?=
.PHONY: restore
restore: venv check-env ## Restore the backups into the scratch host: make restore [ENV=local] [TARGET=latest|"<time>"] [SET=<label>]
	$(PLAYBOOK) ansible/restore.yml -e '{"postgresql_restore_target": "$(TARGET)", "postgresql_restore_set": "$(SET)"}'

# A new primary: NEW names the replica to promote (ansible/failover.yml), then a provision points
# the other replicas and the app at it and rolls the web hosts.
NEW ?=
FORCE ?=
# PROVISION=0 leaves out the provision that follows (the light failover drill of make test);
# run make provision before anything else then.
PROVISION ?= 1
AFTER_FAILOVER = $(if $(filter 0,$(PROVISION)),@echo "PROVISION=0: run make provision ENV=$(ENV) next.",$(MAKE) provision ENV=$(ENV))
.PHONY: switchover
switchover: venv check-env ## Planned: promote replica NEW once it has all the WAL, rejoin the old primary: make switchover NEW=db2 [ENV=local]
	$(PLAYBOOK) ansible/failover.yml -e '{"failover_new": "$(NEW)", "failover_planned": true}'
	$(AFTER_FAILOVER)

.PHONY: failover
failover: venv check-env ## Unplanned: fence the primary, promote replica NEW: make failover NEW=db2 [FORCE=1] [ENV=local]
	$(PLAYBOOK) ansible/failover.yml -e '{"failover_new": "$(NEW)", "failover_force": $(if $(FORCE),true,false)}'
	$(AFTER_FAILOVER)

# An old primary that a failover fenced and did not rejoin (ansible/rejoin.yml): pg_rewind.
OLD ?=
.PHONY: rejoin
rejoin: venv check-env ## Rejoin a fenced old primary as a replica (pg_rewind): make rejoin OLD=db1 [ENV=local]
	$(PLAYBOOK) ansible/rejoin.yml -e '{"rejoin_old": "$(OLD)"}'

# Synchronous replication on or off at once (a reload, no restart): SYNC=0 lets writes go on
# while the replicas are down; the next provision without SYNC sets the model's value again.
.PHONY: replication
replication: venv check-env ## Set synchronous replication now: make replication SYNC=1|0 [ENV=local]
	@[ -n "$(SYNC)" ] || { echo "SYNC must say how many replicas confirm a commit (0: asynchronous)." >&2; exit 2; }
	$(PLAYBOOK) ansible/replication.yml

.PHONY: restart-db
restart-db: venv check-env ## Restart PostgreSQL without failing a request: each replica, then the primary
	$(PLAYBOOK) ansible/restart-db.yml -e restart_db=true

.PHONY: admin-password
admin-password: venv ## Print the admin password of ENV (from its vault)
	@ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-vault view --vault-password-file $(VAULT_PASSWORD) \
	  $(DEPLOY)/group_vars/all/vault.yml | sed -n 's/^vault_admin_password: //p' | tr -d "'"

# PREVIEW_ARGS: more ansible-playbook arguments (-e common_firewall_preview_dir=<folder>).
PREVIEW_ARGS ?=
.PHONY: firewall-preview
firewall-preview: venv ## Write every host's firewall rules to build/ENV/firewall/ without touching a host
	ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-playbook -i $(DEPLOY)/inventory.yml ansible/firewall-preview.yml \
	  $(PREVIEW_ARGS)

# A cloud environment's resources (ansible/cloud.yml, roles/cloud): the network, security
# groups from the firewall's rules, an instance per inventory host, the buckets, the DNS record.
# cloud-up writes the hosts' addresses beside the inventory; make provision follows.
# CLOUD_ARGS: more ansible-playbook arguments (--check, -e cloud_image=...).
CLOUD_ARGS ?=
CLOUD := ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-playbook -i $(DEPLOY)/inventory.yml ansible/cloud.yml
.PHONY: cloud-up
cloud-up: venv ## Create (or converge) ENV's AWS resources, then write its hosts' addresses: make cloud-up ENV=<aws env>
	@[ -s $(DEPLOY)/.ssh/id_ed25519.pub ] || { echo "ENV=$(ENV) has no SSH key: ssh-keygen -t ed25519 -N '' -f $(DEPLOY)/.ssh/id_ed25519" >&2; exit 2; }
	$(CLOUD) $(CLOUD_ARGS)

.PHONY: cloud-down
cloud-down: venv ## Remove what cloud-up made for ENV (FORCE=1 deletes a backup bucket that holds backups)
	$(CLOUD) -e cloud_state=absent $(if $(FORCE),-e cloud_force=true) $(CLOUD_ARGS)

.PHONY: destroy
destroy: venv ## Remove ENV's local fleet: its containers and network (a cloud ENV is left alone)
	@[ -f $(DEPLOY)/inventory.yml ] || { echo "Unknown ENV '$(ENV)'." >&2; exit 2; }
	ANSIBLE_CONFIG=ansible/ansible.cfg $(RUN) ansible-playbook -i $(DEPLOY)/inventory.yml ansible/destroy.yml \
	  $(if $(wildcard $(VAULT_PASSWORD)),--vault-password-file $(VAULT_PASSWORD))

.PHONY: clean
clean: ## Remove the virtualenv, tools, coverage data and build/ (wheels, the local CA)
	rm -rf .venv .tools .coverage .pytest_cache .ruff_cache build
