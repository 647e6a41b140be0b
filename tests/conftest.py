"""Session fixtures: the real PostgreSQL and Kubernetes control plane every test above unit level uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.postgres import Postgres, available_majors
from envbranch.testing.processes import STARTED_PIDS, pid_alive


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Session fixtures are torn down by now: any process they started must be gone.
    alive = [pid for pid in STARTED_PIDS if pid_alive(pid)]
    if alive:
        session.config.stash.setdefault(_LEFTOVERS, alive)  # type: ignore[arg-type]
        print(f"\nERROR: processes started by the fixtures are still running: {alive}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFTOVERS = pytest.StashKey[list[int]]()
