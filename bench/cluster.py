"""The operator's side: a local control plane, the operator as a subprocess, a project whose root
Environments adopt the pgbench databases. P1 (apply → Ready over the raw clone), P6 (concurrent
branches), P7 (memory with many Environments present, API writes while idle)."""

from __future__ import annotations

import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import psutil
from kubernetes import config

from bench.common import Bench
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.crds import install_crds
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project

PROJECT = "bench"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
_names = count()


class Cluster:
    def __init__(self, cp: ControlPlane, project: Project, operator: OperatorProcess) -> None:
        self.cp, self.project, self.operator = cp, project, operator

    # -- environments --------------------------------------------------------------------------
    def adopt_root(self, name: str, dbname: str, namespace: str | None = None) -> None:
        namespace = namespace or f"{PROJECT}-{name}"
        self.project.create_namespace(namespace)
        self.project.allow_adoption(dbname)
        self.project.apply_env(name, {"namespace": namespace, "database": {"serverRef": "main", "name": dbname}})
        self.project.wait_phase(name, "Active", timeout=300)

    def phases(self) -> dict[str, str]:
        items = self.project.custom.list_namespaced_custom_object(GROUP, VERSION, PROJECT, "environments")["items"]
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}

    def branch_all(self, source: str, n: int, strategy: str, mode: str = "Full") -> tuple[float, list[str]]:
        """Apply `n` branches at once; seconds until every one is Active (the names returned)."""
        names = [f"b{next(_names)}" for _ in range(n)]
        start = time.perf_counter()
        for name in names:
            self.project.apply_env(name, {"source": source, "mode": mode, "database": {"strategy": strategy}})

        def all_active() -> bool:
            phases = self.phases()
            failed = [nm for nm in names if phases.get(nm) == "Failed"]
            if failed:
                raise RuntimeError(f"branches failed: {failed}: {self.project.status(failed[0])}")
            return all(phases.get(nm) == "Active" for nm in names)

        wait_until(all_active, timeout=1800, what=f"{n} branches of {source} to be Active", interval=0.05)
        return time.perf_counter() - start, names

    def delete(self, names: list[str]) -> None:
        for name in names:
            self.project.delete_env(name)
        for name in names:
            self.project.wait_gone(name, timeout=600)

    def branch_samples(self, source: str, strategy: str, repeat: int) -> list[tuple[float, dict[str, Any]]]:
        """apply → Active of one branch, `repeat` times: (seconds, its status.database) each."""
        samples = []
        for _ in range(repeat):
            seconds, names = self.branch_all(source, 1, strategy)
            samples.append((seconds, self.project.status(names[0])["database"]))
            self.delete(names)
        return samples

    def branch_seconds(self, source: str, strategy: str, repeat: int) -> tuple[float, str]:
        """Median apply → Active of one branch, and the strategy the operator chose."""
        samples = self.branch_samples(source, strategy, repeat)
        return round(statistics.median(s for s, _ in samples), 3), samples[-1][1]["strategy"]

    # -- the operator and the API server ---------------------------------------------------------
    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each part (PostgreSQL: the server and all its backends)."""
        procs = {"operator": self.operator.process.pid, "kube-apiserver": self.cp.apiserver and self.cp.apiserver.pid,
                 "etcd": self.cp.etcd and self.cp.etcd.pid,
                 "postgres": self.project.pg.process and self.project.pg.process.pid}
        out: dict[str, float] = {}
        for name, pid in procs.items():
            if not pid:
                continue
            root = psutil.Process(pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)] if name == "postgres" else [root]:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    def operator_peak_rss_mb(self) -> float:
        pid = self.operator.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(m.group(1)) / 1024, 1) if m else 0.0

    def api_writes(self) -> dict[str, int]:
        """Write requests the API server has served so far, by resource (its own Lease renewals left out)."""
        text = self.cp.kubectl("get", "--raw", "/metrics").stdout
        out: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if labels.get("verb") in WRITE_VERBS and labels.get("resource") != "leases":
                key = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
                out[key] = out.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
        return out


@contextmanager
def _removed(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def cluster(b: Bench) -> Iterator[Cluster]:
    """Control plane, CRDs, the operator (admin credentials) and a project with a Ready DatabaseServer."""
    work = Path(tempfile.mkdtemp(prefix="envbranch-bench-"))
    with _removed(work), ControlPlane(base_dir=work / "k8s") as cp:
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        install_crds(api)
        project = Project(api, PROJECT, b.pg)
        project.create_namespace(PROJECT)
        project.create_server()
        op = OperatorProcess(cp.kubeconfig, work / "operator.log")
        op.start()
        try:
            project.wait_server_ready()
            yield Cluster(cp, project, op)
        finally:
            op.stop()


def operator_overhead(c: Cluster, scales: list[int], raw: dict[int, dict[str, Any]], repeat: int) -> dict[str, Any]:
    """P1: apply → Ready through the operator over the raw SQL clone of the same database."""
    out: dict[str, Any] = {}
    for scale in scales:
        root = f"prod-s{scale}"
        c.adopt_root(root, f"pgbench_s{scale}")
        row: dict[str, Any] = {}
        for strategy, raw_key in (("Template", "template_file_copy"), ("Dump", "dump_full")):
            seconds, chosen = c.branch_seconds(root, strategy, repeat)
            raw_seconds = raw[scale][raw_key]
            row[strategy.lower()] = {"operator_seconds": seconds, "raw_seconds": raw_seconds, "strategy": chosen,
                                     "overhead_seconds": round(seconds - raw_seconds, 3),
                                     "ratio": round(seconds / raw_seconds, 2)}
        out[str(scale)] = row
    return out


def concurrent_branches(c: Cluster, scale: int, n: int, one: float) -> dict[str, Any]:
    """P6: `n` branches applied together over one branch (Auto: template clones of the small root)."""
    before = c.cpu_seconds()
    seconds, names = c.branch_all(f"prod-s{scale}", n, "Auto")
    after = c.cpu_seconds()
    strategies = sorted({c.project.status(nm)["database"]["strategy"] for nm in names})
    c.delete(names)
    return {"branches": n, "scale": scale, "seconds": round(seconds, 3), "one_branch_seconds": one,
            "strategies": strategies, "P6_concurrent_vs_one": round(seconds / one, 2),
            # What the branches cost: on a 2-CPU machine their sum over 2 is a floor on the wall time.
            "cpu_seconds": {k: round(after[k] - before.get(k, 0), 2) for k in after}}


def _default_service_accounts(c: Cluster, names: list[str]) -> int:
    wanted = {f"{PROJECT}-{name}" for name in names}
    found = c.project.core.list_service_account_for_all_namespaces(field_selector="metadata.name=default").items
    return sum(sa.metadata.namespace in wanted for sa in found)


def many_environments(c: Cluster, dbname: str, n: int, idle_seconds: float) -> dict[str, Any]:
    """P7: `n` root Environments with a ttl of 72h (the preview case: every one has an expiry waiting),
    each adopting a namespace of its own and the small database, all Active; then the operator's peak
    RSS and the API writes during `idle_seconds` of nothing to do."""
    start = time.perf_counter()
    names = [f"idle-{i}" for i in range(n)]
    c.project.allow_adoption(dbname)
    for name in names:
        c.project.create_namespace(f"{PROJECT}-{name}")
        c.project.apply_env(name, {"namespace": f"{PROJECT}-{name}", "ttl": "72h",
                                   "database": {"serverRef": "main", "name": dbname}})
    wait_until(lambda: sum(p == "Active" for p in c.phases().values()) >= n + 1,  # + the small root
               timeout=1800, what=f"{n} Environments to be Active", interval=1)
    settled = time.perf_counter() - start
    # kube-controller-manager makes a default ServiceAccount in every new namespace, a while after it:
    # its writes, not the operator's, so the idle window opens once they are all made.
    wait_until(lambda: _default_service_accounts(c, names) == len(names), timeout=600, interval=1,
               what="a default ServiceAccount in every new namespace")
    before = c.api_writes()
    time.sleep(idle_seconds)  # the measurement window itself: nothing to wait for, only to observe
    after = c.api_writes()
    writes = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return {"environments": len(c.phases()), "kind": "adopting roots with ttl 72h, Active",
            "seconds_to_active": round(settled, 1),
            "idle_seconds": idle_seconds, "api_writes_by_resource": writes,
            "P7_peak_rss_mb": c.operator_peak_rss_mb(), "P7_idle_api_writes": sum(writes.values())}
