"""Load: 50 branches applied at once (one `kubectl apply`) from a small source; all Active with zero
orphans, then all deleted with nothing left. Wall times and the operator's peak RSS go to the results
table."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.admission import environment_body
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

BRANCHES = 50


def _vm_hwm_bytes(pid: int) -> int:
    """The process's peak resident set size since it started (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.reliability(f"load: {BRANCHES} branches applied at once", "one kubectl apply of Full branches of the "
                         "small shop database: all Active, exactly one database and role each, zero orphans; one "
                         "kubectl delete: every Environment, namespace, database and role gone")
@pytest.mark.needs_local_operator  # samples the operator process' memory
def test_fifty_branches_at_once(shop: Project, operator: OperatorProcess, controlplane: ControlPlane,
                                record: Recorder) -> None:
    names = [f"load-{i:02d}" for i in range(BRANCHES)]
    manifests = "---\n".join(yaml.safe_dump(environment_body(n, {"source": "production", "mode": "Full"}))
                             for n in names)
    assert operator.process.pid is not None
    proc = psutil.Process(operator.process.pid)
    peak = [proc.memory_info().rss]

    def phases() -> dict[str, str | None]:
        """Phase of every load branch that exists, sampling the operator's memory on the way."""
        peak[0] = max(peak[0], proc.memory_info().rss)
        items = shop.custom.list_namespaced_custom_object(GROUP, VERSION, shop.namespace, "environments")["items"]
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items
                if i["metadata"]["name"] in names}

    started = time.monotonic()
    controlplane.kubectl("apply", "-n", shop.namespace, "-f", "-", input=manifests)
    wait_until(lambda: Counter(phases().values()) == Counter({"Active": BRANCHES}), timeout=300, interval=0.5,
               what=f"{BRANCHES} branches to be Active (now {Counter(phases().values())})")
    active_s = time.monotonic() - started

    uids = {shop.uid(n) for n in names}
    tagged = engine.find_tagged(shop.engine_server())
    per_branch = Counter(t.uid for t in tagged if t.uid in uids)
    assert per_branch == Counter({uid: 2 for uid in uids})  # one database and one role each
    assert sorted(t.kind for t in tagged if t.uid in uids) == ["database"] * BRANCHES + ["role"] * BRANCHES
    everything = shop.custom.list_cluster_custom_object(GROUP, VERSION, "environments")["items"]
    live = {e["metadata"]["uid"] for e in everything}
    assert [t for t in tagged if t.uid not in live] == []  # zero orphans on the server

    started = time.monotonic()
    controlplane.kubectl("delete", "-n", shop.namespace, "-f", "-", "--wait=false", input=manifests)
    wait_until(lambda: phases() == {}, timeout=300, interval=0.5,
               what=f"the {BRANCHES} branches to be deleted (left: {len(phases())})")
    deleted_s = time.monotonic() - started
    left = [n.metadata.name for n in shop.core.list_namespace().items
            if n.metadata.name.startswith(f"{shop.namespace}-load-")]
    assert left == []
    assert [t for t in engine.find_tagged(shop.engine_server()) if t.uid in uids] == []

    record.number("branches", BRANCHES)
    record.number("apply → all Active", f"{active_s:.1f} s")
    record.number("delete → all gone", f"{deleted_s:.1f} s")
    record.number("operator peak RSS (sampled)", f"{peak[0] / 2**20:.0f} MiB")
    record.number("operator VmHWM", f"{_vm_hwm_bytes(proc.pid) / 2**20:.0f} MiB")


TTL_BRANCHES = 12


@pytest.mark.reliability(f"load: {TTL_BRANCHES} ttl branches applied at once", "one kubectl apply of System "
                         "branches with ttl 72h (more than --concurrency 8): all Active within 300 s; one kubectl "
                         "delete: every Environment gone within 300 s (what they made is not checked here)")
def test_twelve_ttl_branches_at_once(shop: Project, controlplane: ControlPlane, record: Recorder) -> None:
    names = [f"preview-{i:02d}" for i in range(TTL_BRANCHES)]
    manifests = "---\n".join(yaml.safe_dump(environment_body(n, {"source": "production", "mode": "System",
                                                                 "ttl": "72h"})) for n in names)

    def phases() -> Counter[str | None]:
        items = shop.custom.list_namespaced_custom_object(GROUP, VERSION, shop.namespace, "environments")["items"]
        return Counter((i.get("status") or {}).get("phase") for i in items if i["metadata"]["name"] in names)

    started = time.monotonic()
    controlplane.kubectl("apply", "-n", shop.namespace, "-f", "-", input=manifests)
    wait_until(lambda: phases() == Counter({"Active": TTL_BRANCHES}), timeout=300, interval=0.5,
               what=f"{TTL_BRANCHES} ttl branches to be Active (now {phases()})")
    record.number("apply → all Active", f"{time.monotonic() - started:.1f} s")
    controlplane.kubectl("delete", "-n", shop.namespace, "-f", "-", "--wait=false", input=manifests)
    wait_until(lambda: not phases(), timeout=300, interval=0.5, what=f"the ttl branches to be deleted ({phases()})")
