"""The operator as a subprocess (`python -m envbranch`), its log kept for test reports; or, for a
suite run against an existing cluster, a handle on the operator already running there."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path

from kubernetes import client

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.crds import install_crds
from envbranch_testing.manifests import apply_rendered
from envbranch_testing.processes import ManagedProcess, ProcessExited, free_port, wait_until

# The user the e2e operator runs as: the chart's ServiceAccount's user name (a client certificate can
# carry it), bound only to the chart's ClusterRole envbranch-operator and fenced by its policy.
OPERATOR_USER = "system:serviceaccount:envbranch-system:envbranch-operator"
# Short timers so expiry, re-probes and the reaper happen within a test's patience; fault injection on.
# hack/e2e-kind.sh sets the same on the chart's Deployment.
E2E_OPERATOR_ENV = {
    "ENVBRANCH_FAULT_INJECTION": "1", "ENVBRANCH_PROBE_INTERVAL": "2", "ENVBRANCH_REAPER_INTERVAL": "2",
    "ENVBRANCH_REAPER_GRACE": "1", "ENVBRANCH_SOURCE_WAIT": "1", "ENVBRANCH_REFRESH_GRACE": "1",
}


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1", **(env or {})}
        if "ENVBRANCH_SPOOL_DIR" not in self.env:  # as the chart's emptyDir: spooled copies have room
            self.spool_dir = log_path.parent / f"{log_path.stem}-spool"
            self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.env["ENVBRANCH_SPOOL_DIR"] = str(self.spool_dir)
        else:
            self.spool_dir = Path(self.env["ENVBRANCH_SPOOL_DIR"])
        self.args = args
        self.log_path = log_path
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "envbranch", f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                f"--metrics-port={self.metrics_port}", *self.args]
        self.process = ManagedProcess("envbranch-operator", argv, self.log_path, env=self.env)

    def start(self) -> None:
        # A port picked free can be taken by another process before the operator binds it: pick again.
        for attempt in range(3):
            self.process.start()
            try:
                wait_until(self._alive, timeout=60, what="the operator's liveness endpoint")
                return
            except ProcessExited:
                if attempt == 2 or "address already in use" not in self.process.log_tail(20).lower():
                    raise
                self._choose_ports()

    def _alive(self) -> bool:
        import urllib.request

        self.process.check_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=5) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def scrape_metrics(port: int) -> dict[str, float]:
    """The operator's envbranch_* samples, keyed by name and labels as Prometheus prints them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("envbranch_")}


def local_operator(cp: ControlPlane, api: client.ApiClient, log_path: Path,
                   env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> OperatorProcess:
    """The CRDs, the chart's operator ClusterRole and its fence policy installed on `cp`, and an operator
    process (not yet started) authenticating as the ServiceAccount's user bound only to that role: a
    missing permission or a write outside the fence fails the suite, and the role lists nothing the
    suite does not need."""
    install_crds(api)
    apply_rendered(cp, "operator-rbac.yaml")
    apply_rendered(cp, "operator-fence.yaml")
    client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
        "metadata": {"name": "envbranch-operator-e2e"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "envbranch-operator"},
        "subjects": [{"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}]})
    return OperatorProcess(cp.kubeconfig_for(OPERATOR_USER), log_path,
                           env=E2E_OPERATOR_ENV if env is None else env, args=args)


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a test's own URL
        return bool(resp.status == 200)


class ExternalOperator:
    """The operator already running for the cluster (ENVBRANCH_E2E_OPERATOR=external): the chart's
    Deployment, waited on until Available, its log from `kubectl logs` and its metrics through
    `kubectl port-forward` to the Service envbranch-metrics. Without that Deployment (an operator run
    some other way) it waits for `health_url` to answer 200 instead, and has no log or metrics.
    It cannot be killed or restarted: tests that do are marked needs_local_operator."""

    def __init__(self, cluster: ControlPlane, work_dir: Path, *, health_url: str | None = None,
                 namespace: str = "envbranch-system", deployment: str = "envbranch-operator",
                 metrics_service: str = "envbranch-metrics") -> None:
        self.cluster = cluster
        self.work_dir = work_dir
        self.health_url = health_url
        self.namespace = namespace
        self.deployment = deployment
        self.metrics_service = metrics_service
        self.in_cluster = False
        self._port_forward: ManagedProcess | None = None
        self._metrics_port = 0

    def start(self) -> None:
        found = self.cluster.kubectl("get", "deployment", self.deployment, "-n", self.namespace, check=False)
        self.in_cluster = found.returncode == 0
        if self.in_cluster:
            self.cluster.kubectl("wait", "--for=condition=Available", f"deployment/{self.deployment}",
                                 "-n", self.namespace, "--timeout=180s")
        elif self.health_url:
            url = self.health_url
            wait_until(lambda: _answers(url), timeout=60, what=f"the external operator's liveness endpoint {url}")
        else:
            raise RuntimeError(f"ENVBRANCH_E2E_OPERATOR=external, but there is no Deployment {self.deployment} "
                               f"in {self.namespace} and no ENVBRANCH_E2E_OPERATOR_HEALTH URL to wait for")

    def stop(self) -> None:
        if self._port_forward is not None:
            self._port_forward.stop()

    def kill(self) -> None:
        raise NotImplementedError("an external operator cannot be killed by the tests (needs_local_operator)")

    def restart(self) -> None:
        raise NotImplementedError("an external operator cannot be restarted by the tests (needs_local_operator)")

    def log(self) -> str:
        if not self.in_cluster:
            return "(the external operator's log is not available: it is not the Deployment "  \
                   f"{self.deployment} in {self.namespace})"
        out = self.cluster.kubectl("logs", f"deployment/{self.deployment}", "-n", self.namespace,
                                   "--all-containers", "--tail=-1", check=False)
        return out.stdout + out.stderr

    @property
    def metrics_port(self) -> int:
        """A local port forwarded to the metrics Service (opened on first use)."""
        if not self._metrics_port:
            if not self.in_cluster:
                raise RuntimeError("the external operator's metrics are only reachable through the chart's "
                                   f"Service {self.metrics_service} in {self.namespace}")
            port = self.cluster.kubectl("get", "service", self.metrics_service, "-n", self.namespace,
                                        "-o", "jsonpath={.spec.ports[0].port}").stdout.strip()
            self._port_forward = ManagedProcess("kubectl port-forward", [
                str(self.cluster.kubectl_path()), f"--kubeconfig={self.cluster.kubeconfig}", "port-forward",
                "-n", self.namespace, "--address=127.0.0.1", f"service/{self.metrics_service}", f":{port}",
            ], self.work_dir / "metrics-port-forward.log")
            self._port_forward.start()
            self._metrics_port = wait_until(self._forwarded_port, timeout=30,
                                            what=f"kubectl port-forward to {self.metrics_service}")
        return self._metrics_port

    def _forwarded_port(self) -> int | None:
        assert self._port_forward is not None
        self._port_forward.check_alive()
        found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", self._port_forward.log_tail())
        return int(found.group(1)) if found else None
