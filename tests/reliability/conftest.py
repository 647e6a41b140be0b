"""The big source database several fault tests clone. (The results table these tests fill in,
docs/reliability.md, and the `record` fixture: envbranch_testing.reliability_table.)"""

from __future__ import annotations

import uuid

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
