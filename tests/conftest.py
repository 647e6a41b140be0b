"""Session fixtures: the real PostgreSQL and Kubernetes control plane every test above unit level uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.crds import install_crds
from envbranch.testing.manifests import apply
from envbranch.testing.operator import OperatorProcess
from envbranch.testing.postgres import Postgres, available_majors
from envbranch.testing.processes import STARTED_PIDS, pid_alive
from envbranch.testing.scenario import Project


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The default server: PostgreSQL 18 (or ENVBRANCH_PG's major)."""
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="session", params=available_majors(), ids=lambda m: f"pg{m}")
def postgres_each(request: pytest.FixtureRequest) -> Iterator[Postgres]:
    """Every installed server version in turn (18 always, 15 when Debian's is installed)."""
    with Postgres(major=request.param) as pg:
        yield pg


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def k8s(controlplane: ControlPlane) -> client.ApiClient:
    """An admin API client for the local control plane."""
    return config.new_client_from_config(config_file=str(controlplane.kubeconfig))


OPERATOR_USER = "envbranch-operator"
# Short timers so expiry, re-probes and the reaper happen within a test's patience.
OPERATOR_ENV = {
    "ENVBRANCH_FAULT_INJECTION": "1", "ENVBRANCH_PROBE_INTERVAL": "2", "ENVBRANCH_REAPER_INTERVAL": "2",
    "ENVBRANCH_REAPER_GRACE": "1", "ENVBRANCH_SOURCE_WAIT": "1",
}


@pytest.fixture(scope="session")
def operator(controlplane: ControlPlane, k8s: client.ApiClient, postgres: Postgres,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    install_crds(k8s)
    # The operator runs as a user bound only to the chart's ClusterRole: a missing permission
    # fails the suite, and the role lists nothing the suite does not need.
    apply(controlplane, "operator-rbac.yaml")
    client.RbacAuthorizationV1Api(k8s).create_cluster_role_binding({
        "metadata": {"name": "envbranch-operator-e2e"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "envbranch-operator"},
        "subjects": [{"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}]})
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    op = OperatorProcess(controlplane.kubeconfig_for(OPERATOR_USER), log, env=OPERATOR_ENV)
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
    if report.failed and isinstance(op, OperatorProcess):
        report.sections.append(("operator log (last 120 lines)", "\n".join(op.log().splitlines()[-120:])))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Session fixtures are torn down by now: any process they started must be gone.
    alive = [pid for pid in STARTED_PIDS if pid_alive(pid)]
    if alive:
        session.config.stash.setdefault(_LEFTOVERS, alive)  # type: ignore[arg-type]
        print(f"\nERROR: processes started by the fixtures are still running: {alive}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFTOVERS = pytest.StashKey[list[int]]()
