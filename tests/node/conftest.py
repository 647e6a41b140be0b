"""The chart on a real local node (hack/e2e-node.sh, `make test-node`): skipped unless that script
started the node and imported the image (ENVBRANCH_NODE_E2E=1, with ENVBRANCH_E2E_KUBECONFIG and
ENVBRANCH_E2E_CA_DIR naming the cluster)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbranch_testing.controlplane import ExternalCluster

if os.environ.get("ENVBRANCH_NODE_E2E") != "1":
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_e2e: runs after the e2e suite (upgrade, uninstall)")


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[ExternalCluster]:
    cluster = ExternalCluster(Path(os.environ["ENVBRANCH_E2E_KUBECONFIG"]), Path(os.environ["ENVBRANCH_E2E_CA_DIR"]))
    with cluster as c:
        yield c
