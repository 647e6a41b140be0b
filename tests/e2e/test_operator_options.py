"""The operator's own options: JSON logs for log shippers, and a namespace-scoped operator running with
the chart's namespaced RBAC."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.admission import as_user
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.manifests import apply_rendered
from envbranch_testing.operator import E2E_OPERATOR_ENV, OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.scenario import Project, assert_nothing_left


@pytest.mark.needs_local_operator
def test_a_namespace_scoped_operator_with_json_logs(controlplane: ControlPlane, k8s: client.ApiClient,
                                                     operator: OperatorProcess, postgres: Postgres,
                                                     tmp_path: Path) -> None:
    # `operator` installed the CRDs and the operator role. The session's operator watches every
    # namespace: it is stopped meanwhile, so whatever happens to an Environment is this one's doing.
    suffix = uuid.uuid4().hex[:6]
    inside = Project(k8s, f"scoped-{suffix}", postgres)
    outside = Project(k8s, f"unwatched-{suffix}", postgres)
    # Installed as the chart installs it with watchNamespaces: its own ServiceAccount user, bound to
    # a Role in the watched namespace and a ClusterRole holding only what branches need anywhere.
    release, home = f"scoped{suffix}", f"scoped-op-{suffix}"
    inside.create_namespace(inside.namespace)
    inside.create_namespace(home)
    for template in ("operator-rbac.yaml", "serviceaccount.yaml"):
        apply_rendered(controlplane, template, namespace=home, release=release,
                       values=(f"watchNamespaces={{{inside.namespace}}}",))
    user = f"system:serviceaccount:{home}:envbranch-operator"
    with pytest.raises(client.ApiException) as refused:  # nothing of envbranch.io outside the Role's namespace
        as_user(controlplane, user).list_namespaced_custom_object(GROUP, VERSION, outside.namespace, "environments")
    assert refused.value.status == 403
    log = tmp_path / "json.log"
    scoped = OperatorProcess(controlplane.kubeconfig_for(user), log, env=E2E_OPERATOR_ENV,
                             args=("--json-logs", "--namespace", inside.namespace))
    operator.stop()
    try:
        scoped.start()
        try:
            outside.create_namespace(outside.namespace)
            for project in (inside, outside):
                project.create_server()
                project.apply_env("root", {"database": {"serverRef": "main"}})
            status = inside.wait_phase("root", "Active", "Failed", timeout=60)
            assert status["phase"] == "Active", status
            uid = inside.uid("root")
            # The operator had its chance at both; the Environment and DatabaseServer outside are as
            # the user wrote them: no finalizer, no status, no Kopf bookkeeping.
            for plural, name in (("environments", "root"), ("databaseservers", "main")):
                untouched = outside.custom.get_namespaced_custom_object(GROUP, VERSION, outside.namespace,
                                                                        plural, name)
                assert not untouched["metadata"].get("finalizers"), untouched["metadata"]
                assert not untouched.get("status"), untouched
                assert not any(k.startswith("operator.envbranch.io/")
                               for k in untouched["metadata"].get("annotations") or {}), untouched["metadata"]
            assert not outside.namespace_exists(f"{outside.namespace}-root")
            assert outside.event_reasons("root") == []
            inside.delete_env("root")
            inside.wait_gone("root", timeout=60)
            assert_nothing_left(inside, "root", uid)
        finally:
            scoped.stop()
    finally:
        # Nothing outside holds a finalizer: its namespace goes without any operator.
        outside.delete_namespaces()
        inside.delete_namespaces()
        rbac = client.RbacAuthorizationV1Api(k8s)
        rbac.delete_cluster_role_binding(f"{release}-operator")
        rbac.delete_cluster_role(f"{release}-operator")
        operator.start()
    records = [json.loads(line) for line in scoped.log().splitlines() if line.strip()]
    assert records and all(isinstance(r, dict) and r.get("message") for r in records)
