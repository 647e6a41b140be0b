"""kube-apiserver restarted (same etcd) while a branch is in the middle of its reconcile: the branch
completes, and no step runs twice with a visible effect."""

from __future__ import annotations

import time

import pytest
from faults import BIG_ROOT, api_ready, assert_converged, unpause, wait_paused
from kubernetes import client

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project


@pytest.mark.reliability("kube-apiserver restarted mid-reconcile", "the branch completes; one database, role and "
                         "Secret; NamespaceCreated, DatabaseCloned, CredentialsCreated and Active each posted once; no "
                         "rollback; a new branch right after goes through")
def test_apiserver_restarted_mid_reconcile_the_branch_completes_once(
        big: Project, operator: OperatorProcess, controlplane: ControlPlane, k8s: client.ApiClient,
        record: Recorder) -> None:
    name = "apiserver-restart"
    big.apply_env(name, {"source": BIG_ROOT, "mode": "System"},
                  annotations={"envbranch.io/inject-pause": "credentials"})
    wait_paused(big, name, "credentials")
    started = time.monotonic()
    try:
        controlplane.restart_apiserver()
    finally:
        # The session's control plane: whatever happened, it must answer again before anything goes on.
        wait_until(lambda: api_ready(k8s), timeout=120, what="the API server to answer after its restart")
    record.number("API server down and back", f"{time.monotonic() - started:.1f} s")
    unpause(big, name)
    started = time.monotonic()
    status = big.wait_phase(name, "Active", "Failed", timeout=180)
    record.number("unpaused → Active", f"{time.monotonic() - started:.1f} s")
    assert_converged(big, name, status)
    reasons = [r for r, _ in big.wait_events(name, "Active")]
    for once in ("NamespaceCreated", "DatabaseCloned", "CredentialsCreated", "Active"):
        assert reasons.count(once) == 1, reasons
    assert "StepFailed" not in reasons and "RolledBack" not in reasons, reasons  # an outage is not a failure
    # The operator is connected again: a branch made after the restart goes through at once.
    big.apply_env(f"{name}-after", {"source": BIG_ROOT, "mode": "System"})
    assert big.wait_phase(f"{name}-after", "Active", "Failed", timeout=120)["phase"] == "Active"
