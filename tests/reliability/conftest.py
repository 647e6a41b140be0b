"""The big source database several fault tests clone, and a PostgreSQL server of their own for the
tests that stop it. (The results table these tests fill in,
docs/reliability.md, and the `record` fixture: envbranch_testing.reliability_table.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from faults import BIG_ROOT, adopt_root, create_big_database
from kubernetes import client

from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.scenario import Project


@pytest.fixture(scope="session")
def big(operator: OperatorProcess, k8s: client.ApiClient, postgres: Postgres) -> Project:
    """A project whose root `big` adopts a ~200 MB database: a Dump of it takes a few seconds, long
    enough to break things while it runs."""
    proj = Project(k8s, f"big-{uuid.uuid4().hex[:6]}", postgres)
    proj.create_namespace(proj.namespace)
    proj.create_server()
    proj.wait_server_ready()
    create_big_database(postgres, f"big_{proj.namespace.replace('-', '_')}")
    adopt_root(proj, BIG_ROOT, f"big_{proj.namespace.replace('-', '_')}")
    return proj


@pytest.fixture
def side(project: Project) -> Iterator[Project]:
    """A PostgreSQL server of its own (the session's is not disturbed) with a DatabaseServer `side` and
    a root `side-root` adopting a ~130 MB database on it."""
    with Postgres() as pg:
        proj = Project(project.api, project.namespace, pg, server="side")
        proj.create_server("side")
        proj.wait_server_ready("side")
        create_big_database(pg, "side_source", rows=40_000)
        adopt_root(proj, "side-root", "side_source", server="side")
        yield proj
        # Nothing of this project may keep the operator busy once its server is gone.
        for env in proj.custom.list_namespaced_custom_object("envbranch.io", "v1alpha1", proj.namespace,
                                                             "environments")["items"]:
            proj.delete_env(env["metadata"]["name"])
            proj.wait_gone(env["metadata"]["name"])
        proj.custom.delete_namespaced_custom_object("envbranch.io", "v1alpha1", proj.namespace, "databaseservers",
                                                    "side")
