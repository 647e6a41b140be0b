"""SIGKILL the operator at each step boundary of a branch, restart it: the branch ends Active with
exactly one database, one role and one credentials Secret."""

from __future__ import annotations

import pytest

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch.testing.operator import OperatorProcess
from envbranch.testing.processes import wait_until
from envbranch.testing.scenario import Project

STEPS = ["namespace", "database", "credentials", "configuration"]


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_a_step_boundary_the_branch_still_converges(shop: Project, operator: OperatorProcess,
                                                               step: str) -> None:
    name = f"killed-{step}"
    shop.apply_env(name, {"source": "production", "mode": "Full", "copy": {"environmentVariables": True}},
                   annotations={"envbranch.io/inject-pause": step})
    wait_until(lambda: shop.status(name).get("progress", {}).get("step") == step, timeout=60,
               what=f"{name} to pause at step {step}")
    operator.kill()
    try:
        shop.custom.patch_namespaced_custom_object(GROUP, VERSION, shop.namespace, "environments", name, {
            "metadata": {"annotations": {"envbranch.io/inject-pause": None}}})
    finally:
        operator.start()
    status = shop.wait_phase(name, "Active", "Failed", timeout=180)
    assert status["phase"] == "Active", status
    uid = (shop.env(name) or {})["metadata"]["uid"]
    server = engine.Server(shop.pg.host, shop.pg.port, shop.pg.admin.user, shop.pg.admin.password)
    tagged = sorted((t.kind, t.name) for t in engine.find_tagged(server) if t.uid == uid)
    assert tagged == [("database", status["database"]["name"]), ("role", f"{status['database']['name']}_owner")]
    secrets = {s.metadata.name for s in shop.core.list_namespaced_secret(status["namespace"]).items}
    assert secrets == {f"{name}-db", "app-secrets"}
    cms = {c.metadata.name for c in shop.core.list_namespaced_config_map(status["namespace"]).items}
    assert cms - {"kube-root-ca.crt"} == {"app-env", "envbranch-environment"}
