# Alert filter operator: build, test and demo entry points.
#   make test   installs everything it needs (idempotent, cached), runs `make lint`, then the whole suite
#   make lint   ruff (lint + format check), mypy (strict) and import-linter on LINT_PATHS
#   make demo   the main job on the local stack (a kind cluster), on the real alerts
#   make cluster / images / cluster-delete   the kind cluster of kind-config.yaml, the project's images
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Real alerts live beside the checkout, never in it (../shared/data/README.md).
export ALERTFILTER_DATA ?= $(abspath $(ROOT)/../shared/data)
export STRIMZI_CRDS_DIR ?= $(abspath $(ROOT)/../shared/strimzi-crds)
PYTEST_ARGS ?=
# What `make lint` (and the pre-commit hooks, which call it) checks. A path joins once it is clean
# (`make fmt lint LINT_PATHS=PATH`); see the root pyproject.toml. Not yet in: tests/e2e, devstack/,
# hack/, bench/.
LINT_PATHS ?= operator runtime tests/cluster tests/data tests/unit tests/realdata tests/integration

.PHONY: all venv kafka kube helm promtool chromium crds lint fmt test unit integration demo clean docker images cluster cluster-delete chart-deps

all: test

# The venv is rebuilt when a dependency list or the compiled skipper's C source changes (the editable
# install builds it in place); pip's own cache makes that fast.
$(VENV)/.installed: runtime/pyproject.toml operator/pyproject.toml devstack/pyproject.toml requirements-dev.txt constraints.txt \
    $(wildcard runtime/src/alertfilter/*.c runtime/src/alertfilter/*.h)
	@echo ">> Python environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -c constraints.txt -e "runtime[registry,report,science]" -e operator -e devstack -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

kafka:
	@bash hack/fetch-kafka.sh >/dev/null

kube:
	@bash hack/build-kube.sh >/dev/null

helm:
	@bash hack/build-helm.sh >/dev/null

# promtool checks the chart's alert rules and dashboard queries; chromium renders the HTML report (tests).
promtool:
	@bash hack/build-promtool.sh >/dev/null

chromium:
	@bash hack/install-chromium.sh >/dev/null

# The local stack's Kubernetes: a Docker engine, the project's two images from their Dockerfiles,
# the kind cluster of kind-config.yaml (its node image built offline when no registry answers), and
# the chart's Strimzi dependency in charts/. Each is idempotent and cached (hack/*.sh).
docker:
	@bash hack/docker.sh

images: docker
	@bash hack/build-images.sh >/dev/null

cluster: docker kube
	@bash hack/kind-cluster.sh up >/dev/null

cluster-delete:
	@bash hack/kind-cluster.sh down

chart-deps: helm
	@bash hack/chart-deps.sh >/dev/null

crds: venv
	@$(PY) -m alertfilter_operator.crdgen crds
	@cp crds/*.yaml helm/alert-filter-operator/crds/

# Fast checks first: a lint failure stops `make test` before the slow builds and suites.
lint: venv
	@echo ">> lint: $(LINT_PATHS)"
	@$(VENV)/bin/ruff check $(LINT_PATHS)
	@$(VENV)/bin/ruff format --check $(LINT_PATHS)
	@$(VENV)/bin/mypy $(LINT_PATHS)
	@$(VENV)/bin/lint-imports --no-logo --no-cache

# Rewrite LINT_PATHS in place: format, then the lint fixes ruff knows to be safe.
fmt: venv
	@$(VENV)/bin/ruff format $(LINT_PATHS)
	@$(VENV)/bin/ruff check --fix $(LINT_PATHS)

test: venv lint kafka kube helm promtool chromium chart-deps cluster images
	@bash .ci/pytest.sh $(PYTEST_ARGS)

unit: venv
	@$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

integration: venv kafka
	@$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

demo: venv kafka kube chart-deps cluster images
	@$(PY) -m alertfilter_devstack.demo

clean:
	rm -rf $(VENV) .pytest_cache
