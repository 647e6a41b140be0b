"""`helm install` of charts/envbranch on the local node with the image built here: the operator Pod
comes up Ready through its probes, as the chart's ServiceAccount, with every client tool it needs;
then (after the e2e suite ran against it) an upgrade to two replicas and an uninstall."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from envbranch_testing.controlplane import REPO_ROOT, ExternalCluster
from envbranch_testing.image import WHEEL_PG_CLIENT, dockerfile_spec, local_plan
from envbranch_testing.processes import wait_until

NAMESPACE = "envbranch-system"
RELEASE = "envbranch"
CHART = REPO_ROOT / "charts" / "envbranch"
# The chart's defaults, but the image built and imported here (envbranch_testing.image.LOCAL_IMAGE).
# The chart's default repository is the published one; the image built here is named apart.
LOCAL_IMAGE_VALUES = ("--set", "image.repository=docker.io/envbranch/operator", "--set", "image.tag=local")
INSTALL_TIMEOUT = os.environ.get("ENVBRANCH_NODE_INSTALL_TIMEOUT", "4m")


def helm(cluster: ExternalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    helm_bin = shutil.which("helm") or "helm"
    out = subprocess.run([helm_bin, f"--kubeconfig={cluster.kubeconfig}", *args], capture_output=True,
                         text=True, check=False, timeout=600)
    assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
    return out


def operator_pods(cluster: ExternalCluster) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=envbranch", "-o", "json")
    return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def describe_failure(cluster: ExternalCluster) -> str:
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False).stdout
    logs = cluster.kubectl("logs", "-n", NAMESPACE, "deployment/envbranch-operator", "--tail=60", check=False)
    return f"events:\n{events[-3000:]}\nlog:\n{logs.stdout[-4000:]}{logs.stderr[-500:]}"


def exec_in(cluster: ExternalCluster, pod: str, *argv: str) -> str:
    out = cluster.kubectl("exec", "-n", NAMESPACE, pod, "--", *argv, check=False)
    assert out.returncode == 0, f"{' '.join(argv)} in {pod}: {out.stderr}{out.stdout}"
    return out.stdout.strip()


@pytest.fixture(scope="module")
def installed(node_cluster: ExternalCluster, request: pytest.FixtureRequest) -> list[dict]:
    """The release installed (once) with the chart's defaults; the seconds to a Ready Pod go to stderr."""
    listed = helm(node_cluster, "list", "-n", NAMESPACE, "-q").stdout.split()
    if RELEASE not in listed:
        started = time.monotonic()
        out = subprocess.run([shutil.which("helm") or "helm", f"--kubeconfig={node_cluster.kubeconfig}", "install",
                              RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", *LOCAL_IMAGE_VALUES,
                              "--wait", f"--timeout={INSTALL_TIMEOUT}"], capture_output=True, text=True, check=False,
                             timeout=600)
        if out.returncode != 0:
            pytest.fail(f"helm install: {out.stderr}\n{describe_failure(node_cluster)}")
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\n>> helm install to a Ready Pod: {time.monotonic() - started:.1f}s", file=sys.stderr)
    pods = operator_pods(node_cluster)
    assert pods, describe_failure(node_cluster)
    return pods


def test_the_operator_pod_is_ready_through_its_probes(node_cluster: ExternalCluster, installed: list[dict]) -> None:
    pod = installed[0]
    assert ready(pod), describe_failure(node_cluster)
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, describe_failure(node_cluster)
    # The probe's endpoint itself, through the API server's proxy to the Pod's address on the bridge.
    name = pod["metadata"]["name"]
    health = node_cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:8080/proxy/healthz")
    assert health.returncode == 0


def test_it_runs_as_the_charts_service_account_non_root_read_only(node_cluster: ExternalCluster,
                                                                   installed: list[dict]) -> None:
    pod = installed[0]
    assert pod["spec"]["serviceAccountName"] == "envbranch-operator"
    name = pod["metadata"]["name"]
    assert exec_in(node_cluster, name, "id", "-u") == "10001"
    token = exec_in(node_cluster, name, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
    claims = json.loads(_b64url(token.split(".")[1]))
    assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:envbranch-operator"
    written = node_cluster.kubectl("exec", "-n", NAMESPACE, name, "--", "touch", "/app/x", check=False)
    assert written.returncode != 0, "the root file system should be read-only"
    # Every call it made so far was allowed: a missing permission in the chart's role shows here.
    log = node_cluster.kubectl("logs", "-n", NAMESPACE, name).stdout
    assert "Forbidden" not in log and "403" not in log, log[-3000:]


def test_the_image_has_client_tools_for_every_supported_server(node_cluster: ExternalCluster,
                                                               installed: list[dict]) -> None:
    name = installed[0]["metadata"]["name"]
    script = ("from envbranch.postgres.tools import find_client_tools as f\n"
              "print(' '.join(f'{m}:{f(m).major}' for m in (15, 16, 17, 18)))")
    served = dict(pair.split(":") for pair in exec_in(node_cluster, name, "python", "-c", script).split())
    # Exactly what the Dockerfile's client list comes to here (envbranch_testing.image.local_plan).
    expected = local_plan(dockerfile_spec()).served_by
    assert {int(k): int(v) for k, v in served.items()} == expected, served
    for major in set(expected.values()) - {WHEEL_PG_CLIENT}:  # Debian's: run each tool once
        for tool in ("pg_dump", "pg_restore", "psql"):
            assert str(major) in exec_in(node_cluster, name, f"/usr/lib/postgresql/{major}/bin/{tool}", "--version")


@pytest.mark.after_e2e
def test_upgrade_to_two_replicas_peers(node_cluster: ExternalCluster, installed: list[dict]) -> None:
    helm(node_cluster, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--set", "replicas=2",
         "--wait", "--timeout=4m")
    wait_until(lambda: len(pods := operator_pods(node_cluster)) == 2 and all(map(ready, pods)),
               timeout=180, what="two Ready operator Pods")
    peering = node_cluster.kubectl("get", "clusterkopfpeering", "envbranch", "-o", "json")
    assert json.loads(peering.stdout)["metadata"]["name"] == "envbranch"
    for pod in operator_pods(node_cluster):
        args = pod["spec"]["containers"][0]["args"]
        assert "--peering" in args


@pytest.mark.after_e2e
def test_uninstall_removes_the_operator(node_cluster: ExternalCluster, installed: list[dict]) -> None:
    helm(node_cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=3m")
    wait_until(lambda: not operator_pods(node_cluster), timeout=120, what="the operator Pods to go")
    gone = node_cluster.kubectl("get", "deployment", "envbranch-operator", "-n", NAMESPACE, check=False)
    assert gone.returncode != 0
    # CRDs stay (Helm never deletes crds/), so Environments outlive an uninstall.
    assert node_cluster.kubectl("get", "crd", "environments.envbranch.io").returncode == 0


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
