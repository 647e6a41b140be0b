"""The Helm chart: `helm lint --strict`, `helm template | kubeconform -strict` against schemas the local
API server publishes (our CRDs installed), and the rendered chart applied to that API server, which
must accept every object — with the default values, with the ServiceMonitor on and off, and with two
replicas (peering)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.crds import install_crds
from envbranch_testing.tools import CHART, documents, render_chart, run_tool, write_kubeconform_schemas

NAMESPACE = "envbranch-system"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "servicemonitor-on": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    "servicemonitor-off": {"metrics": {"serviceMonitor": {"enabled": False}}},
    "two-replicas": {"replicas": 2},
    "two-replicas-namespaced": {"replicas": 2, "watchNamespaces": ["shop", "billing"]},
}

# The Prometheus Operator is not installed here. This is the smallest ServiceMonitor CRD that
# describes what the chart sets (the real one is far larger); the API server then stores the
# chart's ServiceMonitor like any other object, and kubeconform checks it against this schema.
_STRING = {"type": "string"}
SERVICE_MONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "required": ["spec"], "properties": {"spec": {
                     "type": "object", "required": ["selector"], "properties": {
                         "selector": {"type": "object", "properties": {
                             "matchLabels": {"type": "object", "additionalProperties": _STRING}}},
                         "namespaceSelector": {"type": "object", "properties": {
                             "matchNames": {"type": "array", "items": _STRING}}},
                         "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                             "port": _STRING, "path": _STRING, "interval": _STRING}}}}}}}}}]}}


@pytest.fixture(scope="module")
def cluster(controlplane: ControlPlane, k8s: client.ApiClient) -> ControlPlane:
    """The API server with every CRD the chart's objects need: envbranch's and Kopf's (both in the
    chart's crds/) and the ServiceMonitor stand-in."""
    install_crds(k8s, CHART / "crds")
    install_crds(k8s, CHART / "crds" / "kopf")
    controlplane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(SERVICE_MONITOR_CRD))
    controlplane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                         "crd/servicemonitors.monitoring.coreos.com")
    return controlplane


@pytest.fixture(scope="module")
def schema_location(cluster: ControlPlane, k8s: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    api_versions = {d["apiVersion"] for values in VARIANTS.values() for d in documents(render_chart(values))}
    return write_kubeconform_schemas(k8s, tmp_path_factory.mktemp("schemas"), api_versions)


def _kubeconform(manifests: str, schema_location: str) -> tuple[int, dict[str, int], str]:
    out = run_tool("kubeconform", "-strict", "-summary", "-output", "json", "-schema-location", schema_location,
                   input=manifests, check=False)
    return out.returncode, json.loads(out.stdout)["summary"], out.stdout + out.stderr


def test_helm_lint_strict_passes_for_every_variant() -> None:
    for name, values in VARIANTS.items():
        args = [f"--set-json={key}={json.dumps(value)}" for key, value in values.items()]
        out = run_tool("helm", "lint", str(CHART), "--strict", *args, check=False)
        assert out.returncode == 0, f"{name}: {out.stdout}{out.stderr}"
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", [{"replica": 2}, {"replicas": 0}, {"image": {"pullPolicy": "Sometimes"}},
                                    {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
                                    {"watchNamespaces": ["Not_A_Namespace"]}, {"resources": {"request": {}}}],
                         ids=["unknown-key", "no-replicas", "pull-policy", "flag-type", "namespace", "typo-nested"])
def test_values_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        render_chart(values)
    assert "values don't meet the specifications of the schema" in info.value.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_chart_is_valid_for_kubeconform_strict(schema_location: str, variant: str) -> None:
    manifests = render_chart(VARIANTS[variant])
    code, summary, output = _kubeconform(manifests, schema_location)
    assert code == 0, output
    assert summary["valid"] == len(documents(manifests)), output
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0, output


def test_kubeconform_with_these_schemas_refuses_what_the_api_server_would(schema_location: str) -> None:
    docs = documents(render_chart({}))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = "metrics"
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    crd["spec"]["scope"] = 3
    code, summary, output = _kubeconform(yaml.safe_dump_all([deployment, service, crd]), schema_location)
    assert code != 0 and summary["invalid"] == 3, output
    assert "paht" in output


def _apply(cp: ControlPlane, docs: list[dict[str, Any]]) -> None:
    cp.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=helm-chart-test", "-f", "-",
               input=yaml.safe_dump_all(docs))


def _stored(cp: ControlPlane, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as the API server stored them, in the order given (kubectl fails on any missing)."""
    out = cp.kubectl("get", "-o", "json", "-f", "-", input=yaml.safe_dump_all(docs))
    return list(json.loads(out.stdout)["items"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_chart_is_accepted_by_the_api_server(cluster: ControlPlane, variant: str) -> None:
    values = VARIANTS[variant]
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    for ns in values.get("watchNamespaces", []):
        cluster.kubectl("create", "namespace", ns, check=False)
    # A release of its own: its cluster-scoped objects (the operator's ClusterRole, its fence) must not
    # replace those the session's operator runs under.
    docs = documents(render_chart(values, release="charttest"))
    # As Helm installs: the CRDs of crds/ first, then the templates (the peering object needs its CRD).
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    _apply(cluster, crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    *[f"crd/{d['metadata']['name']}" for d in crds])
    objects = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    _apply(cluster, objects)
    stored_objects = _stored(cluster, objects)
    assert len(stored_objects) == len(objects)
    for doc, stored in zip(objects, stored_objects, strict=True):
        assert stored["kind"] == doc["kind"] and stored["metadata"]["name"] == doc["metadata"]["name"]
        # Accepted as rendered: nothing pruned as unknown, nothing refused.
        for key in ("spec", "rules", "roleRef", "subjects", "webhooks"):
            if key in doc:
                assert _contains(stored[key], doc[key]), (doc["kind"], key, stored[key], doc[key])
    kinds = sorted({d["kind"] for d in objects})
    assert ("ServiceMonitor" in kinds) == bool(values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"))
    peering = {"ClusterKopfPeering", "KopfPeering"} & set(kinds)
    assert bool(peering) == (values.get("replicas", 1) > 1)


def _contains(stored: Any, rendered: Any) -> bool:
    """rendered is a subset of stored (the server adds defaults; it must drop nothing)."""
    if isinstance(rendered, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in rendered.items())
    if isinstance(rendered, list):
        return isinstance(stored, list) and len(stored) == len(rendered) and all(
            _contains(s, r) for s, r in zip(stored, rendered, strict=True))
    return bool(stored == rendered)


def _deployment(values: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in documents(render_chart(values)) if d["kind"] == "Deployment")


def test_deployment_is_hardened_with_one_replica_by_default() -> None:
    deployment = _deployment({})
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert "--peering" not in container["args"]
    assert pod["serviceAccountName"] == "envbranch-operator"


def test_more_replicas_turn_on_peering_with_the_object_kopf_needs() -> None:
    args = _deployment({"replicas": 2})["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering" in args and "--peering-name=envbranch" in args
    docs = documents(render_chart({"replicas": 2}))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs if d["apiVersion"] == "kopf.dev/v1"] == [
        ("ClusterKopfPeering", "envbranch")]
    docs = documents(render_chart({"replicas": 3, "watchNamespaces": ["shop"]}))
    assert [(d["kind"], d["metadata"].get("namespace")) for d in docs if d["apiVersion"] == "kopf.dev/v1"] == [
        ("KopfPeering", "shop")]


def test_metrics_service_selects_the_operator_pods_and_the_servicemonitor_scrapes_it() -> None:
    docs = documents(render_chart({"metrics": {"serviceMonitor": {"enabled": True}}}))
    by_kind = {d["kind"]: d for d in docs}
    pod_labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = by_kind["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = by_kind["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_chart_crds_are_installed_from_crds_and_never_templated() -> None:
    templated = documents(render_chart({"replicas": 2}, include_crds=False))
    assert not [d for d in templated if d["kind"] == "CustomResourceDefinition"]
    crd_files = sorted(str(p.relative_to(CHART)) for p in (CHART / "crds").rglob("*.yaml"))
    assert crd_files == ["crds/envbranch.io_databaseservers.yaml", "crds/envbranch.io_environments.yaml",
                         "crds/envbranch.io_maskingpolicies.yaml",
                         "crds/kopf/kopf.dev_clusterkopfpeerings.yaml", "crds/kopf/kopf.dev_kopfpeerings.yaml"]
    assert re.search(r"(?m)^kubeVersion:", (CHART / "Chart.yaml").read_text())
    assert Path(CHART / "values.schema.json").is_file()


def test_helm_install_upgrade_and_uninstall_keep_the_crds_and_their_objects() -> None:
    """A real `helm install` on a control plane of its own (the session's already holds the chart's
    cluster-wide objects, outside any release): upgrade to two replicas, then uninstall — the
    release's objects go, the CRDs and the custom objects stay."""
    with ControlPlane(controller_manager=False) as cp:
        def helm(*args: str) -> str:
            return run_tool("helm", *args, "--kubeconfig", str(cp.kubeconfig), "--namespace", NAMESPACE).stdout

        helm("install", "envbranch", str(CHART), "--create-namespace")
        assert cp.kubectl("get", "-n", NAMESPACE, "deployment/envbranch-operator", "-o",
                          "jsonpath={.spec.replicas}").stdout == "1"
        cp.kubectl("create", "namespace", "shop")
        cp.kubectl("apply", "-n", "shop", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "envbranch.io/v1alpha1", "kind": "DatabaseServer", "metadata": {"name": "main"},
            "spec": {"host": "db.example", "adminSecretRef": {"name": "main-admin"}}}))
        helm("upgrade", "envbranch", str(CHART), "--set", "replicas=2")
        args = cp.kubectl("get", "-n", NAMESPACE, "deployment/envbranch-operator", "-o",
                          "jsonpath={.spec.template.spec.containers[0].args}").stdout
        assert "--peering" in args
        cp.kubectl("get", "clusterkopfpeering/envbranch")
        helm("uninstall", "envbranch")
        for gone in ("clusterrole/envbranch-operator", "clusterkopfpeering/envbranch",
                     "validatingadmissionpolicy/envbranch-copy-flags", f"deployment/envbranch-operator -n {NAMESPACE}"):
            out = cp.kubectl("get", *gone.split(), check=False)
            assert out.returncode != 0 and "NotFound" in out.stderr, (gone, out.stdout)
        crds = cp.kubectl("get", "crd", "-o", "name").stdout.split()
        assert sorted(crds) == ["customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
                                "customresourcedefinition.apiextensions.k8s.io/databaseservers.envbranch.io",
                                "customresourcedefinition.apiextensions.k8s.io/environments.envbranch.io",
                                "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev",
                                "customresourcedefinition.apiextensions.k8s.io/maskingpolicies.envbranch.io"]
        cp.kubectl("get", "-n", "shop", "databaseserver/main")
