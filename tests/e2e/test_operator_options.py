"""The operator's own options: JSON logs for log shippers, and a namespace-scoped operator."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.operator import E2E_OPERATOR_ENV, OPERATOR_USER, OperatorProcess
from envbranch.testing.processes import wait_until


@pytest.mark.needs_local_operator
def test_json_logs_are_one_json_object_per_line(controlplane: ControlPlane, k8s: client.ApiClient,
                                                operator: OperatorProcess, tmp_path: Path) -> None:
    # `operator` installed the CRDs and the operator role; this second operator watches one empty
    # namespace only, so it never competes with the session's.
    ns = f"scoped-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    log = tmp_path / "json.log"
    scoped = OperatorProcess(controlplane.kubeconfig_for(OPERATOR_USER), log, env=E2E_OPERATOR_ENV,
                             args=("--json-logs", "--namespace", ns))
    scoped.start()
    try:
        wait_until(lambda: len(scoped.log().splitlines()) >= 2, timeout=30, what="the operator to log")
    finally:
        scoped.stop()
        client.CoreV1Api(k8s).delete_namespace(ns)
    records = [json.loads(line) for line in scoped.log().splitlines() if line.strip()]
    assert records and all(isinstance(r, dict) and r.get("message") for r in records)
