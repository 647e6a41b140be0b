# envbranch — every step a machine needs is a target here; nothing is done by hand.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export ENVBRANCH_CACHE ?= $(HOME)/.cache/envbranch
STATE := $(ENVBRANCH_CACHE)/local
PYTEST_ARGS ?=
# The suite's tests in parallel (pytest-xdist): each worker starts its own control plane, PostgreSQL and
# operator when its tests first need them; a test file is one unit of work, the slow layers handed out
# first (tests/conftest.py). Most of the time is spent waiting on servers, so more workers than CPUs
# pay. TEST_WORKERS=0: everything in one process.
TEST_WORKERS ?= 3
XDIST_ARGS = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
DIST ?= dist

.PHONY: help venv lint test test-unit test-integration test-e2e test-reliability controlplane tools \
        up down demo crds bench e2e-kind pg15 clean dist krew chart version node image test-node

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml harness/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' -e harness
	touch $@

venv: $(VENV)/.installed ## create .venv with the pinned dependencies

controlplane: ## build etcd, kube-apiserver, kube-controller-manager, kubectl from Go modules (cached)
	@bash hack/build-controlplane.sh >/dev/null

tools: ## build helm and kubeconform from Go modules in hack/tools (cached)
	@bash hack/build-tools.sh >/dev/null

pg15: ## install Debian's PostgreSQL 15 (the second server version tests run against) and xfsprogs (the reflink test), best effort
	@bash hack/apt-install.sh "tests run against PostgreSQL 18 only" postgresql-15
	@bash hack/apt-install.sh "the reflink clone test is skipped" xfsprogs

lint: venv ## ruff, mypy, shellcheck (installed best effort) and actionlint (built from hack/actionlint, cached)
	$(VENV)/bin/ruff check operator harness tests bench krew
	$(VENV)/bin/mypy
	@bash hack/apt-install.sh "the shell scripts are only parsed (bash -n)" shellcheck
	if command -v shellcheck >/dev/null; then shellcheck hack/*.sh .ci/run; fi
	actionlint=$$(bash hack/build-actionlint.sh | tail -n1)/actionlint && "$$actionlint" .github/workflows/*.yml

crds: venv ## regenerate crds/ from the pydantic models in envbranch.api
	$(PY) -m envbranch.api.crdgen crds
	$(PY) -m envbranch.api.crdgen charts/envbranch/crds

test: venv controlplane tools pg15 lint ## everything CI runs: lint, unit, integration, e2e and reliability tests (TEST_WORKERS in parallel)
	$(VENV)/bin/pytest $(XDIST_ARGS) $(PYTEST_ARGS)

test-unit: venv ## unit tests only (no servers)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: venv controlplane tools ## integration tests against the real API server and PostgreSQL
	$(VENV)/bin/pytest tests/integration $(XDIST_ARGS) $(PYTEST_ARGS)

test-e2e: venv controlplane ## end-to-end tests: the operator as a subprocess
	$(VENV)/bin/pytest tests/e2e $(XDIST_ARGS) $(PYTEST_ARGS)

test-reliability: venv controlplane ## fault, bad-input, leak and load tests
	$(VENV)/bin/pytest tests/reliability $(XDIST_ARGS) $(PYTEST_ARGS)

node: ## build kubelet, kube-proxy, kube-scheduler, containerd and the pause image (cached); install runc, CNI plugins, iptables
	@bash hack/apt-install.sh "the local node cannot start" runc containernetworking-plugins iptables conntrack mmdebstrap
	@bash hack/build-node.sh >/dev/null

image: venv ## the operator image (OCI archive) from the Dockerfile's declared contents, no registry; imported into a running `make up NODE=1`
	@mkdir -p $(ENVBRANCH_CACHE)/image
	$(PY) -m envbranch_testing.image --output $(ENVBRANCH_CACHE)/image/operator.tar --cache $(ENVBRANCH_CACHE)/image
	@sock=$(STATE)/node/containerd/containerd.sock; if [ -S "$$sock" ]; then \
	  "$$(bash hack/build-node.sh)/ctr" --address "$$sock" -n k8s.io images import $(ENVBRANCH_CACHE)/image/operator.tar; fi

test-node: ## (root) the chart on a local node: image, helm install, tests/node, tests/e2e against the Pod, upgrade, uninstall
	bash hack/e2e-node.sh $(PYTEST_ARGS)

up: venv controlplane $(if $(NODE),node) ## start a local control plane and PostgreSQL that stay up (NODE=1: and a node)
	$(PY) -m envbranch_testing up --state-dir $(STATE) $(if $(NODE),--node)

down: venv ## stop what `make up` started
	$(PY) -m envbranch_testing down --state-dir $(STATE)

demo: venv controlplane ## the whole story: control plane, PostgreSQL, operator, a sample app branched
	$(PY) -m envbranch_testing demo

bench: venv controlplane ## performance ratios, plots and the README table (not part of make test; BENCH_SCALES, BENCH_REPEAT)
	@bash hack/apt-install.sh "the benchmark reports it as unavailable" pgcopydb xfsprogs
	$(PY) -m bench

dist: venv ## build the wheel and sdist into $(DIST)/ (python -m build, its build tools pinned by constraints.txt) and twine check them
	rm -f $(DIST)/envbranch-*.whl $(DIST)/envbranch-*.tar.gz
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m build --outdir $(DIST) .
	$(PY) -m twine check --strict $(DIST)/envbranch-*.whl $(DIST)/envbranch-*.tar.gz

krew: dist ## the krew plugin archive and its manifest into $(DIST)/krew/ (hack/krew-archive.sh)
	bash hack/krew-archive.sh $(DIST) $(DIST)/krew

chart: tools ## package the chart into $(DIST)/chart/ (helm package)
	helm=$$(bash hack/build-tools.sh | tail -n1)/helm && "$$helm" package charts/envbranch --destination $(DIST)/chart

version: ## set the release version: make version V=X.Y.Z (pyproject.toml, the chart, CHANGELOG.md; hack/set-version.sh)
	@[ -n "$(V)" ] || { echo "usage: make version V=X.Y.Z" >&2; exit 1; }
	bash hack/set-version.sh $(V)

e2e-kind: ## for machines with Docker: build the image, create a kind cluster, run the e2e suite on it
	bash hack/e2e-kind.sh

clean: ## remove the virtualenv and caches (the control plane build cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
