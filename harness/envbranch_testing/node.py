"""A real local node joined to the local control plane: containerd (with its CRI plugin), runc,
kubelet and kube-proxy on this machine, Pods on a CNI bridge (`NODE_BRIDGE`, `POD_SUBNET`) whose
gateway address (`NODE_ADDRESS`) is this machine as the Pods see it: the API server advertises it
(the `kubernetes` Service's endpoint) and PostgreSQL listens on it.

kubelet, kube-proxy, containerd, its runc shim, ctr and the pause image come from
`hack/build-node.sh` (Go modules and kubernetes' pause.c, cached); runc, the CNI plugins and
iptables from Debian's packages (`make node`). Root only: a node mounts, makes network namespaces
and writes iptables rules.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from envbranch_testing.controlplane import REPO_ROOT, ControlPlane, _b64, run_build_script
from envbranch_testing.processes import ManagedProcess, free_port, wait_until

NODE_BUILD_SCRIPT = REPO_ROOT / "hack" / "build-node.sh"
NODE_NAME = "envbranch-node"
NODE_BRIDGE = "envbr0"
POD_SUBNET = "10.88.0.0/16"
NODE_ADDRESS = "10.88.0.1"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
RUNC = "/usr/sbin/runc"
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for the CRI's images and containers


COREDNS_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "envbranch-node:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "envbranch-node:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "envbranch-node:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "envbranch-node:coredns"}]
"""


def node_assets_dir() -> Path:
    return run_build_script(NODE_BUILD_SCRIPT, "the node")


def missing_host_tools() -> list[str]:
    """What the node needs from Debian's packages (`make node` installs them) and is not here."""
    missing = [] if os.geteuid() == 0 else ["root"]
    if not Path(RUNC).is_file():
        missing.append("runc")
    if not any(Path(d, "bridge").is_file() and Path(d, "host-local").is_file() for d in CNI_BIN_DIRS):
        missing.append("containernetworking-plugins")
    for tool in ("iptables", "conntrack"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def ensure_bridge() -> None:
    """The Pods' bridge with the node's address, before anything listens on that address (the CNI
    bridge plugin then finds it and adds the Pods' veths to it)."""
    if subprocess.run(["ip", "link", "show", NODE_BRIDGE], capture_output=True, check=False).returncode != 0:
        subprocess.run(["ip", "link", "add", NODE_BRIDGE, "type", "bridge"], check=True)
    prefix = POD_SUBNET.split("/")[1]
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", NODE_BRIDGE], capture_output=True,
                           text=True, check=True).stdout
    if f"{NODE_ADDRESS}/{prefix}" not in addrs:
        subprocess.run(["ip", "addr", "add", f"{NODE_ADDRESS}/{prefix}", "dev", NODE_BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", NODE_BRIDGE, "up"], check=True)


def delete_bridge() -> None:
    subprocess.run(["ip", "link", "delete", NODE_BRIDGE], capture_output=True, check=False)


class Node:
    """`Node(cp, base_dir).start()`: containerd, kubelet and kube-proxy registered as NODE_NAME with the
    control plane `cp` (started with `node_address=NODE_ADDRESS`); `stop()` removes every container,
    mount, network namespace and iptables rule it made."""

    def __init__(self, controlplane: ControlPlane, base_dir: Path) -> None:
        self.cp = controlplane
        self.base_dir = base_dir
        self.assets: Path | None = None
        self.containerd: ManagedProcess | None = None
        self.kubelet: ManagedProcess | None = None
        self.kube_proxy: ManagedProcess | None = None
        self.scheduler: ManagedProcess | None = None
        self.coredns: ManagedProcess | None = None
        self.socket = base_dir / "containerd" / "containerd.sock"
        self.runc_root = base_dir / "runc"

    @property
    def processes(self) -> list[ManagedProcess]:
        procs = (self.coredns, self.scheduler, self.kube_proxy, self.kubelet, self.containerd)
        return [p for p in procs if p is not None]

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        if missing := missing_host_tools():
            raise RuntimeError(f"the local node needs {', '.join(missing)} (run `make node`)")
        self.assets = node_assets_dir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ensure_bridge()
        self._start_containerd()
        self.import_image(self.assets / "pause.tar")
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_scheduler()
        self._start_coredns()
        wait_until(self._node_ready, timeout=180, what=f"node {NODE_NAME} to be Ready")

    def _env(self) -> dict[str, str]:
        assert self.assets is not None
        return {**os.environ, "PATH": f"{self.assets}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}

    def _start_containerd(self) -> None:
        assert self.assets is not None
        d = self.base_dir / "containerd"
        cni = self.base_dir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-envbranch.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "envbranch", "plugins": [
                {"type": "bridge", "bridge": NODE_BRIDGE, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True, "ipam": {
                     "type": "host-local", "dataDir": str(cni / "ipam"),
                     "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_ADDRESS}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}, indent=1))
        bin_dirs = [b for b in CNI_BIN_DIRS if Path(b).is_dir()]
        cri = 'plugins."io.containerd.cri.v1'
        config = f"""version = 3
root = "{d / 'root'}"
state = "{d / 'state'}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "info"
[{cri}.images"]
  snapshotter = "overlayfs"
  [{cri}.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[{cri}.runtime"]
  enable_selinux = false
  # No CAP_SYS_RESOURCE in some sandboxes (this machine's): a Pod sandbox's oom_score_adj (-998) may
  # not go below containerd's own, or runc fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [{cri}.runtime".containerd]
    default_runtime_name = "runc"
    [{cri}.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.runtime".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{self.runc_root}"
        SystemdCgroup = false
  [{cri}.runtime".cni]
    bin_dirs = {json.dumps(bin_dirs)}
    conf_dir = "{cni / 'net.d'}"
"""
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.toml").write_text(config)
        self.containerd = ManagedProcess("containerd", [
            str(self.assets / "containerd"), f"--config={d / 'config.toml'}"],
            self.base_dir / "containerd.log", env=self._env())
        self.containerd.start()

        def serving() -> bool:
            assert self.containerd is not None
            self.containerd.check_alive()
            return self.ctr("version", check=False).returncode == 0

        wait_until(serving, timeout=60, what="containerd to serve")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.assets is not None
        return subprocess.run([str(self.assets / "ctr"), f"--address={self.socket}", f"--namespace={K8S_NAMESPACE}",
                               *args], capture_output=True, text=True, check=check, timeout=600)

    def import_image(self, archive: Path) -> None:
        """An OCI image archive into the node's runtime, where Pods find it (never pulled)."""
        out = self.ctr("images", "import", "--no-unpack=false", "--snapshotter=overlayfs", str(archive), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed: {out.stderr.strip()}")

    def _kubeconfig(self, name: str, user: str, groups: tuple[str, ...]) -> Path:
        pair = self.cp.ca.issue(user, organizations=groups)
        path = self.base_dir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "local", "cluster": {
                "server": f"https://{NODE_ADDRESS}:{self.cp.port}",
                "certificate-authority-data": _b64(self.cp.ca.cert_pem)}}],
            "users": [{"name": user, "user": {"client-certificate-data": _b64(pair.cert_pem),
                                               "client-key-data": _b64(pair.key_pem)}}],
            "contexts": [{"name": "node", "context": {"cluster": "local", "user": user}}],
        }))
        path.chmod(0o600)
        return path

    def _start_kubelet(self) -> None:
        assert self.assets is not None
        kubeconfig = self._kubeconfig("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
        (self.base_dir / "ca.crt").write_bytes(self.cp.ca.cert_pem)
        serving = self.cp.ca.issue(NODE_NAME, server=True, dns_names=(NODE_NAME, "localhost"),
                                   ips=(NODE_ADDRESS, "127.0.0.1"))
        cert, key = serving.write(self.base_dir, "kubelet-serving")
        self.kubelet_port = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_ADDRESS, "port": self.kubelet_port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "tlsCertFile": str(cert), "tlsPrivateKeyFile": str(key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.base_dir / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # Pods resolve through the cluster DNS only (CoreDNS on the node's address), never this
            # machine's resolvers.
            "clusterDomain": "cluster.local", "clusterDNS": [NODE_ADDRESS], "resolvConf": "",
            # A shared developer machine: never evict for its disk or memory, never GC images.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "maxPods": 30, "serializeImagePulls": False, "registerNode": True,
            "syncFrequency": "10s", "fileCheckFrequency": "10s", "nodeStatusUpdateFrequency": "5s",
            "protectKernelDefaults": False, "makeIPTablesUtilChains": False,
            "localStorageCapacityIsolation": False,
        }
        path = self.base_dir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        self.kubelet = ManagedProcess("kubelet", [
            str(self.assets / "kubelet"), f"--config={path}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.base_dir / 'kubelet'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_ADDRESS}", f"--cert-dir={self.base_dir / 'kubelet-pki'}", "--v=1",
        ], self.base_dir / "kubelet.log", env=self._env())
        self.kubelet.start()

    def _start_kube_proxy(self) -> None:
        assert self.assets is not None
        kubeconfig = self._kubeconfig("kube-proxy", "system:kube-proxy", ())
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)}, "mode": "iptables",
            "clusterCIDR": POD_SUBNET, "hostnameOverride": NODE_NAME,
            "bindAddress": "127.0.0.1", "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.base_dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.kube_proxy = ManagedProcess("kube-proxy", [str(self.assets / "kube-proxy"), f"--config={path}", "--v=1"],
                                         self.base_dir / "kube-proxy.log", env=self._env())
        self.kube_proxy.start()

    def _start_scheduler(self) -> None:
        """A node needs a scheduler to get Pods; it belongs to the control plane, but only a cluster
        with a node needs one."""
        assert self.assets is not None
        kubeconfig = self._kubeconfig("kube-scheduler", "system:kube-scheduler", ())
        self.scheduler = ManagedProcess("kube-scheduler", [
            str(self.assets / "kube-scheduler"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--authentication-skip-lookup=true", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--cert-dir={self.base_dir / 'scheduler-certs'}",
        ], self.base_dir / "kube-scheduler.log", env=self._env())
        self.scheduler.start()

    def _start_coredns(self) -> None:
        """The cluster DNS, as a process on the node's address (port 53), reading Services from the API
        as the ClusterRole below allows."""
        assert self.assets is not None
        self.cp.kubectl("apply", "-f", "-", input=COREDNS_RBAC)
        kubeconfig = self._kubeconfig("coredns", "envbranch-node:coredns", ())
        health = free_port()
        corefile = self.base_dir / "Corefile"
        corefile.write_text(f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_ADDRESS}
    errors
    health 127.0.0.1:{health}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} node
        pods insecure
    }}
}}
""")
        self.coredns = ManagedProcess("coredns", [str(self.assets / "coredns"), "-conf", str(corefile)],
                                      self.base_dir / "coredns.log", env=self._env())
        self.coredns.start()

    def _node_ready(self) -> bool:
        for proc in self.processes:
            proc.check_alive()
        out = self.cp.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.kubelet:
            self.kubelet.stop()
        for proc in (self.coredns, self.scheduler, self.kube_proxy):
            if proc:
                proc.stop()
        cleanup(self.base_dir, containerd=self.containerd)


def cleanup(base_dir: Path, containerd: ManagedProcess | None = None) -> None:
    """Undo a node whose kubelet is gone: its containers, containerd and shims, every mount below
    `base_dir`, the Pods' network namespaces, kube-proxy's iptables rules and the bridge. Also what
    `make down` runs, where only the folder is left."""
    runc_root = base_dir / "runc" / K8S_NAMESPACE
    if runc_root.is_dir() and Path(RUNC).is_file():
        ids = subprocess.run([RUNC, f"--root={runc_root}", "list", "-q"], capture_output=True, text=True,
                             check=False).stdout.split()
        for cid in ids:
            subprocess.run([RUNC, f"--root={runc_root}", "delete", "--force", cid], capture_output=True,
                           check=False, timeout=60)
    if containerd:
        containerd.stop()
    _kill_shims(base_dir / "containerd" / "containerd.sock")
    _unmount_all(base_dir)
    with contextlib.suppress(RuntimeError):
        proxy = node_assets_dir() / "kube-proxy"
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False, timeout=60)
    # kube-proxy's guard against localnet traffic outlives --cleanup.
    for tool in ("iptables", "ip6tables"):
        for args in (["-D", "INPUT", "-j", "KUBE-FIREWALL"], ["-D", "OUTPUT", "-j", "KUBE-FIREWALL"],
                     ["-F", "KUBE-FIREWALL"], ["-X", "KUBE-FIREWALL"]):
            subprocess.run([tool, *args], capture_output=True, check=False)
    delete_bridge()


def _kill_shims(socket: Path) -> None:
    """The runc shims of a node's containerd (they outlive it on purpose)."""
    needle = str(socket).encode()
    killed: list[Path] = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc_dir / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and needle in cmdline:
                os.kill(int(proc_dir.name), 9)
                killed.append(proc_dir)
    # Only once they are dead (gone, or a zombie awaiting its reaper) are their mounts free to unmount.
    wait_until(lambda: all(_dead(d) for d in killed), timeout=30, what="the node's runc shims to exit")


def _dead(proc_dir: Path) -> bool:
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _unmount_all(base_dir: Path) -> None:
    """Every mount below the node's folder (rootfs overlays, volumes, shm) and the Pods' network
    namespaces that the CRI made."""
    base = str(base_dir.resolve())
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == base or point.startswith(base + "/") or point.startswith("/run/netns/cni-") \
                    or point.startswith("/var/run/netns/cni-"):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for netns_dir in (Path("/run/netns"), Path("/var/run/netns")):
        if netns_dir.is_dir():
            for ns in netns_dir.glob("cni-*"):
                with contextlib.suppress(OSError):
                    ns.unlink()
