"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager started
as processes on 127.0.0.1, with certificates generated for the run.

The binaries come from KUBEBUILDER_ASSETS when it names a folder holding them, else from the cache
that `hack/build-controlplane.sh` fills from Go modules (built on first use).
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from envbranch_testing.certs import CertificateAuthority, service_account_keys
from envbranch_testing.processes import ManagedProcess, free_port, wait_until

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"


def run_build_script(script: Path, what: str) -> Path:
    """Run a hack/build-*.sh script (a no-op taking milliseconds once built): the folder it printed last."""
    out = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"building {what} failed (exit {out.returncode}); see the output above")
    return Path(out.stdout.strip().splitlines()[-1])


def built_assets_dir() -> Path:
    """The build cache, built now when missing (a no-op taking milliseconds once built)."""
    if not BUILD_SCRIPT.is_file():
        raise RuntimeError("no control plane binaries: set KUBEBUILDER_ASSETS to a folder holding "
                           f"{', '.join(BINARIES)} (the build script is only in a source checkout)")
    return run_build_script(BUILD_SCRIPT, "the control plane")


def find_binary(name: str) -> Path:
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidate = Path(assets) / name
        if candidate.is_file():
            return candidate
    return built_assets_dir() / name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ControlPlane:
    """`with ControlPlane() as cp:` — `cp.kubeconfig` is an admin kubeconfig for the new cluster."""

    def __init__(self, base_dir: Path | None = None, *, controller_manager: bool = True,
                 node_address: str | None = None) -> None:
        self._own_dir = base_dir is None
        # With a local node (envbranch_testing.node): the API server also listens on the node's bridge
        # address and advertises it, so the `kubernetes` Service leads Pods to it.
        self.node_address = node_address
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="envbranch-k8s-"))
        self.pki = self.base_dir / "pki"
        self.with_controller_manager = controller_manager
        self.ca = CertificateAuthority()
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None
        self.port = 0
        self.kubeconfig = self.base_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.controller_manager, self.apiserver, self.etcd) if p is not None]

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start / stop ----------------------------------------------------------------------------
    def start(self) -> None:
        bins = {name: find_binary(name) for name in BINARIES}
        self.pki.mkdir(parents=True, exist_ok=True)
        (self.pki / "ca.crt").write_bytes(self.ca.cert_pem)
        serving = self.ca.issue("kube-apiserver", server=True,
                                dns_names=("localhost", "kubernetes", "kubernetes.default",
                                           "kubernetes.default.svc"), ips=("127.0.0.1", "10.0.0.1",
                                                                         *filter(None, [self.node_address])))
        serving.write(self.pki, "apiserver")
        service_account_keys().write(self.pki, "sa")

        self._start_etcd(bins["etcd"])
        self._start_apiserver(bins["kube-apiserver"])
        self.write_kubeconfig(self.kubeconfig, "envbranch-admin", ("system:masters",))
        if self.with_controller_manager:
            self._start_controller_manager(bins["kube-controller-manager"])

    def _start_etcd(self, binary: Path) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.etcd = ManagedProcess("etcd", [
            str(binary), "--name=default", f"--data-dir={self.base_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ], self.base_dir / "etcd.log")
        self.etcd.start()
        wait_until(lambda: self._etcd_healthy(), timeout=60, what="etcd /health")

    def _etcd_healthy(self) -> bool:
        assert self.etcd is not None
        self.etcd.check_alive()
        with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=5) as resp:  # noqa: S310
            return b'"true"' in resp.read()

    def _start_apiserver(self, binary: Path) -> None:
        self.port = free_port()
        if self.node_address:
            kubelet_client = self.ca.issue("kube-apiserver-kubelet-client", organizations=("system:masters",))
            kcert, kkey = kubelet_client.write(self.pki, "apiserver-kubelet-client")
            node_args = ["--bind-address=0.0.0.0", f"--advertise-address={self.node_address}",
                         "--authorization-mode=Node,RBAC", "--endpoint-reconciler-type=lease",
                         f"--kubelet-client-certificate={kcert}", f"--kubelet-client-key={kkey}",
                         "--kubelet-preferred-address-types=InternalIP"]
        else:
            node_args = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                         "--authorization-mode=RBAC", "--endpoint-reconciler-type=none"]
        self.apiserver = ManagedProcess("kube-apiserver", [
            str(binary), f"--etcd-servers={self.etcd_url}", f"--secure-port={self.port}", *node_args,
            f"--cert-dir={self.base_dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--client-ca-file={self.pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki / 'sa.crt'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false",
        ], self.base_dir / "kube-apiserver.log")
        self.apiserver.start()
        wait_until(self._apiserver_ready, timeout=120, what="kube-apiserver /readyz")

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        admin = self.ca.issue("envbranch-readyz", organizations=("system:masters",))
        cert, key = admin.write(self.pki, "readyz")
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _apiserver_ready(self) -> bool:
        assert self.apiserver is not None
        self.apiserver.check_alive()
        if not hasattr(self, "_ctx"):
            self._ctx = self._ssl_context()
        with urllib.request.urlopen(f"{self.server}/readyz", timeout=5, context=self._ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)

    def _start_controller_manager(self, binary: Path) -> None:
        # Real clusters give each controller its own service account; one privileged identity
        # is the simple equivalent for a local test cluster.
        kubeconfig = self.write_kubeconfig(self.base_dir / "controller-manager.kubeconfig",
                                           "system:kube-controller-manager", ("system:masters",))
        port = free_port()
        self.controller_manager = ManagedProcess("kube-controller-manager", [
            str(binary), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--controllers=namespace,garbagecollector,serviceaccount-token,serviceaccount,clusterrole-aggregation"
            # With a node, Pods run: Deployments make ReplicaSets make Pods, Services get endpoints.
            + (",deployment,replicaset,endpoint,endpointslice,podgc,nodelifecycle,root-ca-cert-publisher"
               if self.node_address else ""),
            "--authentication-skip-lookup=true", "--leader-elect=false", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.base_dir / 'kcm-certs'}",
            "--concurrent-namespace-syncs=5", "--concurrent-gc-syncs=10",
        ], self.base_dir / "kube-controller-manager.log")
        self.controller_manager.start()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its serving cert is self-signed and only for /healthz

        def healthy() -> bool:
            assert self.controller_manager is not None
            self.controller_manager.check_alive()
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5,
                                        context=insecure) as resp:
                return bool(resp.status == 200)

        wait_until(healthy, timeout=120, what="kube-controller-manager /healthz")

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and etcd (for fault tests)."""
        assert self.apiserver is not None
        self.apiserver.stop()
        self.apiserver.start()
        wait_until(self._apiserver_ready, timeout=120, what="kube-apiserver /readyz after restart")

    # -- kubeconfigs -----------------------------------------------------------------------------
    def write_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` by a client certificate."""
        pair = self.ca.issue(user, organizations=groups)
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "envbranch-local",
            "clusters": [{"name": "envbranch-local", "cluster": {
                "server": self.server, "certificate-authority-data": _b64(self.ca.cert_pem)}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}}],
            "contexts": [{"name": "envbranch-local", "context": {"cluster": "envbranch-local", "user": user}}],
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def kubeconfig_for(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        return self.write_kubeconfig(self.base_dir / f"user-{safe}.kubeconfig", user, groups)

    def kubectl_path(self) -> Path:
        return find_binary("kubectl")

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl_path()), f"--kubeconfig={kubeconfig or self.kubeconfig}",
                               *args], input=input, capture_output=True, text=True, check=check, timeout=120)


class ExternalCluster(ControlPlane):
    """An existing cluster (kind, for `make e2e-kind`) behind what tests use from ControlPlane:
    `kubeconfig` is its admin kubeconfig, `server` its API server, `kubeconfig_for(user, groups)` mints
    a client-certificate kubeconfig with the cluster's own CA (ca.crt and ca.key in `ca_dir`), and
    `kubectl` runs the kubectl on PATH. Nothing is started or stopped but a folder for kubeconfigs."""

    def __init__(self, kubeconfig: Path, ca_dir: Path) -> None:
        ca = CertificateAuthority.load(ca_dir)  # before the temp folder: a missing file leaves nothing behind
        super().__init__(controller_manager=False)
        self.ca = ca
        self.pki = ca_dir
        self.kubeconfig = kubeconfig
        self._server = current_server(kubeconfig)
        self.port = urllib.parse.urlsplit(self._server).port or 443

    @property
    def server(self) -> str:
        return self._server

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        wait_until(lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                   timeout=60, what=f"the external cluster's API server {self.server} to be ready")
        # A CA that is not the cluster's shows here, not as puzzling 401s in the middle of a test.
        probe = self.kubectl("get", "--raw", "/api", check=False,
                             kubeconfig=self.kubeconfig_for("envbranch-ca-check"))
        if probe.returncode != 0:
            raise RuntimeError(f"a client certificate issued with the CA in {self.pki} is refused by "
                               f"{self.server}: is it that cluster's CA? ({probe.stderr.strip()})")

    def restart_apiserver(self) -> None:
        raise RuntimeError("the API server of an external cluster cannot be restarted by the tests")

    def kubectl_path(self) -> Path:
        on_path = shutil.which("kubectl")
        return Path(on_path) if on_path else find_binary("kubectl")


def current_server(kubeconfig: Path) -> str:
    """The API server URL of a kubeconfig's current context."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    return str(next(c["cluster"]["server"] for c in cfg["clusters"] if c["name"] == context["cluster"]))
