"""The local control plane is a real Kubernetes API: CRDs, status subresource, RBAC, admission
policies and the controller manager's namespace deletion all behave as on a cluster."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.processes import wait_until

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.envbranch.io"},
    "spec": {
        "group": "smoke.envbranch.io", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
            }}},
        }],
    },
}


def _namespace(k8s: client.ApiClient) -> str:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _status(call: object, *args: object, **kwargs: object) -> int:
    try:
        call(*args, **kwargs)  # type: ignore[operator]
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_server_reports_its_version(controlplane: ControlPlane) -> None:
    out = json.loads(controlplane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]


def test_custom_resource_lifecycle_with_status_subresource(k8s: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    ext.create_custom_resource_definition(WIDGET_CRD)
    wait_until(lambda: any(c.type == "Established" and c.status == "True"
                           for c in ext.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
                           .status.conditions or []), timeout=30, what="the CRD to be established")
    ns = _namespace(k8s)
    api = client.CustomObjectsApi(k8s)
    args = ("smoke.envbranch.io", "v1", ns, "widgets")
    api.create_namespaced_custom_object(*args, {"apiVersion": "smoke.envbranch.io/v1", "kind": "Widget",
                                                "metadata": {"name": "w1"}, "spec": {"size": 3}})
    api.patch_namespaced_custom_object_status(*args, "w1", {"status": {"phase": "Ready"}})
    # A status written through the main resource is ignored: the subresource is real.
    api.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": 4}, "status": {"phase": "Ignored"}})
    obj = api.get_namespaced_custom_object(*args, "w1")
    assert obj["spec"]["size"] == 4
    assert obj["status"]["phase"] == "Ready"
    api.delete_namespaced_custom_object(*args, "w1")
    assert _status(api.get_namespaced_custom_object, *args, "w1") == 404


def test_namespace_deletion_completes(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    ns = _namespace(k8s)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"),
                                                             data={"k": "v"}))
    core.delete_namespace(ns)
    wait_until(lambda: _status(core.read_namespace, ns) == 404, timeout=60,
               what=f"namespace {ns} to be deleted by the namespace controller")


def test_garbage_collector_removes_dependents(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    ns = _namespace(k8s)
    owner = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])))
    core.delete_namespaced_config_map("owner", ns)
    wait_until(lambda: _status(core.read_namespaced_config_map, "dependent", ns) == 404, timeout=60,
               what="the garbage collector to delete the dependent")


def test_rbac_refuses_an_unprivileged_user_until_granted(controlplane: ControlPlane,
                                                         k8s: client.ApiClient) -> None:
    ns = _namespace(k8s)
    alice = config.new_client_from_config(config_file=str(controlplane.kubeconfig_for("alice", ("dev",))))
    core = client.CoreV1Api(alice)
    assert _status(core.list_namespaced_config_map, ns) == 403
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(ns, {"metadata": {"name": "cm-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(ns, {"metadata": {"name": "dev-cm-reader"},
                                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                         "kind": "Role", "name": "cm-reader"},
                                             "subjects": [{"kind": "Group", "name": "dev",
                                                           "apiGroup": "rbac.authorization.k8s.io"}]})
    wait_until(lambda: _status(core.list_namespaced_config_map, ns) == 200, timeout=30,
               what="the group binding to take effect")
    assert _status(core.list_namespace) == 403


def test_validating_admission_policy_is_enforced(k8s: client.ApiClient) -> None:
    ns = _namespace(k8s)
    adm = client.AdmissionregistrationV1Api(k8s)
    name = f"smoke-deny-{ns}"
    adm.create_validating_admission_policy({
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                         "operations": ["CREATE"],
                                                         "resources": ["configmaps"]}]},
                 "validations": [{"expression": "!has(object.data) || !('forbidden' in object.data)",
                                  "message": "smoke: key 'forbidden' is not allowed"}]}})
    adm.create_validating_admission_policy_binding({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": ns}}}}})
    core = client.CoreV1Api(k8s)

    def refused() -> str | None:
        try:
            core.create_namespaced_config_map(ns, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(generate_name="probe-"), data={"forbidden": "1"}))
        except ApiException as exc:
            return str(exc.body) if exc.status == 422 else None
        return None

    body = wait_until(refused, timeout=30, what="the admission policy to be enforced")
    assert "smoke: key 'forbidden' is not allowed" in body
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="fine"),
                                                             data={"ok": "1"}))


@pytest.mark.timeout(300)
def test_stop_leaves_no_process() -> None:
    cp = ControlPlane(controller_manager=False)
    with cp:
        pids = [p.pid for p in cp.processes]
        assert len(pids) == 2
    from envbranch_testing.processes import pid_alive

    assert [p for p in pids if p is not None and pid_alive(p)] == []
