"""Session fixtures: the real PostgreSQL and Kubernetes control plane every test above unit level uses.

By default everything is local: a control plane, PostgreSQL and the operator as processes. The e2e
suite can instead run against an existing cluster (hack/e2e-kind.sh sets these for a kind cluster):

  ENVBRANCH_E2E_KUBECONFIG        an admin kubeconfig of an existing cluster: no control plane is started.
  ENVBRANCH_E2E_CA_DIR            a folder with that cluster's CA, ca.crt and ca.key (kind: docker cp
                                  <cluster>-control-plane:/etc/kubernetes/pki/ca.key), with which tests
                                  mint per-user client-certificate kubeconfigs as they do locally.
  ENVBRANCH_E2E_OPERATOR=external the operator already runs, installed by the chart with CRDs, RBAC and
                                  the E2E_OPERATOR_ENV timers: the fixture waits for the Deployment
                                  envbranch-operator in envbranch-system to be Available (its log from
                                  kubectl logs, metrics by kubectl port-forward); without that Deployment
                                  it waits for ENVBRANCH_E2E_OPERATOR_HEALTH (a /healthz URL) instead.
                                  Tests marked needs_local_operator (they kill or restart it) are skipped.
  ENVBRANCH_PG_LISTEN             the address the test PostgreSQL listens on, also DatabaseServer.spec.host
                                  (default 127.0.0.1; for Pods in kind, the kind network's gateway).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from envbranch_testing.controlplane import ControlPlane, ExternalCluster
from envbranch_testing.operator import ExternalOperator, OperatorProcess, local_operator
from envbranch_testing.postgres import Postgres, ServerTls, available_majors, tls_majors
from envbranch_testing.processes import STARTED_PROCESSES, still_running
from envbranch_testing.scenario import Project

# Here, not in tests/reliability/conftest.py: under pytest-xdist the table is written by the controller,
# which loads only this conftest.
pytest_plugins = ["envbranch_testing.reliability_table"]

EXTERNAL_KUBECONFIG = os.environ.get("ENVBRANCH_E2E_KUBECONFIG")
EXTERNAL_OPERATOR = os.environ.get("ENVBRANCH_E2E_OPERATOR") == "external"
PG_LISTEN = os.environ.get("ENVBRANCH_PG_LISTEN") or "127.0.0.1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The default server: PostgreSQL 18 (or ENVBRANCH_PG's major)."""
    with Postgres(host=PG_LISTEN) as pg:
        yield pg


@pytest.fixture(scope="session", params=available_majors(), ids=lambda m: f"pg{m}")
def postgres_each(request: pytest.FixtureRequest) -> Iterator[Postgres]:
    """Every installed server version in turn (18 always, 15 when Debian's is installed)."""
    with Postgres(major=request.param, host=PG_LISTEN) as pg:
        yield pg


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[Postgres]:
    """A server that requires TLS (certificate for PG_LISTEN from a test CA, `pg.tls.ca`), one per
    module. Debian's build: the embedded PostgreSQL 18 has no TLS."""
    majors = tls_majors()
    if not majors:
        pytest.skip("no PostgreSQL server built with OpenSSL is installed (`make pg15`)")
    with Postgres(major=majors[0], host=PG_LISTEN, tls=ServerTls.for_host(PG_LISTEN)) as pg:
        yield pg


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    if EXTERNAL_KUBECONFIG:
        ca_dir = os.environ.get("ENVBRANCH_E2E_CA_DIR")
        if not ca_dir:
            raise RuntimeError("ENVBRANCH_E2E_KUBECONFIG needs ENVBRANCH_E2E_CA_DIR (the cluster's ca.crt and ca.key)")
        cluster: ControlPlane = ExternalCluster(Path(EXTERNAL_KUBECONFIG), Path(ca_dir))
    else:
        cluster = ControlPlane()
    with cluster as cp:
        yield cp


@pytest.fixture(scope="session")
def k8s(controlplane: ControlPlane) -> client.ApiClient:
    """An admin API client for the local control plane."""
    return config.new_client_from_config(config_file=str(controlplane.kubeconfig))


@pytest.fixture(scope="session")
def operator(controlplane: ControlPlane, k8s: client.ApiClient, postgres: Postgres,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess | ExternalOperator]:
    work = Path(tmp_path_factory.mktemp("operator"))
    op: OperatorProcess | ExternalOperator
    if EXTERNAL_OPERATOR:
        op = ExternalOperator(controlplane, work, health_url=os.environ.get("ENVBRANCH_E2E_OPERATOR_HEALTH"))
    else:
        op = local_operator(controlplane, k8s, work / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def project(operator: OperatorProcess, k8s: client.ApiClient, postgres: Postgres) -> Iterator[Project]:
    """A fresh project namespace with a Ready DatabaseServer `main`, deleted afterwards."""
    proj = Project(k8s, f"p-{uuid.uuid4().hex[:6]}", postgres)
    proj.create_namespace(proj.namespace)
    proj.create_server()
    proj.wait_server_ready()
    yield proj
    proj.delete_namespaces()


@pytest.fixture
def shop(project: Project) -> Project:
    """`project` plus the production root adopting a sample database and configured namespace."""
    project.setup_production(f"shop_{project.namespace.replace('-', '_')}", f"{project.namespace}-prod")
    return project


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    op = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(op, OperatorProcess | ExternalOperator):
        report.sections.append(("operator log (last 120 lines)", "\n".join(op.log().splitlines()[-120:])))


def pytest_report_header(config: pytest.Config) -> str | None:
    if not EXTERNAL_KUBECONFIG:
        return None
    operator = "external" if EXTERNAL_OPERATOR else "a local process"
    return f"envbranch e2e: external cluster {EXTERNAL_KUBECONFIG}, operator {operator}, PostgreSQL on {PG_LISTEN}"


# The layers in the order the workers of `make test` (pytest-xdist, `--dist loadfile
# --no-loadscope-reorder`: a test file is one unit, handed out in collection order) get them: the slowest
# first, so the quick unit tests fill the gaps at the end.
LAYERS_FIRST = ("reliability", "e2e", "integration", "node", "unit")


def _layer(item: pytest.Item) -> int:
    top = Path(str(item.path)).relative_to(Path(__file__).parent).parts[0]
    return LAYERS_FIRST.index(top) if top in LAYERS_FIRST else len(LAYERS_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # the controller schedules in the order the workers collected
        items.sort(key=_layer)
    if not EXTERNAL_OPERATOR:
        return
    skip = pytest.mark.skip(reason="needs_local_operator: the operator runs outside this session "
                                   "(ENVBRANCH_E2E_OPERATOR=external) and cannot be killed, restarted or measured")
    for item in items:
        if item.get_closest_marker("needs_local_operator"):
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: the processes a worker's fixtures left running (see below)."""
    left = getattr(node, "workeroutput", {}).get("leftover_processes", [])
    node.config.stash.setdefault(_LEFTOVERS, []).extend((pid, ticks) for pid, ticks in left)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Session fixtures are torn down by now: any process they started must be gone. An xdist worker
    # hands what it left running to the controller, which fails the run.
    if hasattr(session.config, "workerinput"):
        left = [p for p in STARTED_PROCESSES if still_running([p])]
        session.config.workeroutput["leftover_processes"] = left  # type: ignore[attr-defined]
        return
    alive = still_running(STARTED_PROCESSES + session.config.stash.get(_LEFTOVERS, []))
    if alive:
        print(f"\nERROR: processes started by the fixtures are still running: {alive}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFTOVERS = pytest.StashKey[list[tuple[int, int | None]]]()
