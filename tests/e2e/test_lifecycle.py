"""Waiting, failures with rollback, retry, deletion, expiry, the reaper and idleness, end to end."""

from __future__ import annotations

import uuid

import pytest
import yaml
from kubernetes import client, watch

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch.branching.inventory import Entry
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.history import History
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project, assert_nothing_left


def test_waits_for_a_missing_source_then_branches(project: Project) -> None:
    project.apply_env("early", {"source": "production", "mode": "System"})
    status = project.wait_phase("early", "Pending")
    source = next(c for c in status["conditions"] if c["type"] == "SourceReady")
    assert source["status"] == "False" and source["reason"] == "SourceNotFound"
    assert not project.namespace_exists(f"{project.namespace}-early")
    project.setup_production(f"shop_{project.namespace.replace('-', '_')}", f"{project.namespace}-prod")
    assert project.wait_phase("early", "Active", "Failed")["phase"] == "Active"


def _made_before(project: Project, name: str, step: str) -> list[Entry]:
    """The inventory of a Full branch with environmentVariables and gatewayRoutes when `step` fails:
    everything made by the steps before it, in the order it was made."""
    ns, server = f"{project.namespace}-{name}", project.server
    made = {
        "database": [Entry("Namespace", ns)],
        "credentials": [Entry("Role", engine.branch_role_name(project.namespace, name), server=server),
                        Entry("Database", engine.branch_database_name(project.namespace, name), server=server)],
        "configuration": [Entry("Secret", f"{name}-db", namespace=ns),
                          Entry("ConfigMap", "envbranch-environment", namespace=ns)],
        # Categories are copied in name order: environment-variables before gateway-routes.
        "configuration/gateway-routes": [Entry("ConfigMap", "app-env", namespace=ns),
                                         Entry("Secret", "app-secrets", namespace=ns)],
    }
    steps = list(made)
    return [e for s in steps[:steps.index(step) + 1] for e in made[s]]


# Each fault fires after something was made (a fault at the namespace step would have nothing to
# roll back): the database step after the namespace, configuration/gateway-routes after the first
# category's copies.
@pytest.mark.parametrize("step", ["database", "credentials", "configuration", "configuration/gateway-routes"])
def test_a_failure_at_each_step_rolls_everything_back(shop: Project, step: str) -> None:
    name = f"fail-{step.replace('/', '-')}"
    with History(shop.api, shop.namespace, name) as history:
        shop.apply_env(name, {"source": "production", "mode": "Full",
                              "copy": {"environmentVariables": True, "gatewayRoutes": True}},
                       annotations={"envbranch.io/inject-fault": step})
        status = shop.wait_stalled(name)
        history.wait(lambda h: h.settled(("Failed", "Stalled")) and h.all_deleted(),
                     what=f"the watches to see {name} rolled back")
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Stalled"]["status"] == "True"
    assert conds["Stalled"]["reason"] == "InjectedFault"
    assert f"step {step} failed" in conds["Stalled"]["message"]
    assert status.get("inventory") in (None, [])
    # What the failed step's predecessors made was recorded, each Kubernetes object before it was
    # created, and really made; then removed newest first, each verified gone before it was let go.
    expected = _made_before(shop, name, step)
    assert history.largest_inventory() == expected
    created = history.assert_recorded_before_created()
    assert created == [e for e in expected if e.kind in ("Namespace", "ConfigMap", "Secret")]
    history.assert_rolled_back_in_reverse()
    shop.wait_events(name, "StepFailed", "RolledBack")
    assert_nothing_left(shop, name, shop.uid(name))


def test_a_namespace_that_is_not_ours_is_never_touched(shop: Project) -> None:
    shop.create_namespace(f"{shop.namespace}-taken", labels={"team": "someone-else"})
    shop.apply_env("taken", {"source": "production", "mode": "System"})
    status = shop.wait_stalled("taken")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NamespaceConflict"
    assert shop.namespace_exists(f"{shop.namespace}-taken")
    assert shop.tagged((shop.env("taken") or {})["metadata"]["uid"]) == []
    # The finalizer of a failed branch must not take the name for its own either.
    shop.delete_env("taken")
    shop.wait_gone("taken", timeout=60)
    taken = shop.core.read_namespace(f"{shop.namespace}-taken")
    assert taken.metadata.deletion_timestamp is None and taken.metadata.labels["team"] == "someone-else"


def test_retry_annotation_runs_a_failed_branch_again(shop: Project) -> None:
    shop.apply_env("again", {"source": "production", "mode": "System"},
                   annotations={"envbranch.io/inject-fault": "credentials"})
    shop.wait_stalled("again")
    # The cause removed, but no retry asked for: the operator handles the change (Kopf records it as
    # the last handled configuration) and the branch stays Failed.
    shop.annotate("again", {"envbranch.io/inject-fault": None})

    def handled() -> bool:
        ann = (shop.env("again") or {})["metadata"].get("annotations") or {}
        last = ann.get("operator.envbranch.io/last-handled-configuration", "")
        return bool(last) and "inject-fault" not in last

    wait_until(handled, timeout=60, what="the operator to handle the removed fault annotation")
    status = shop.status("again")
    assert status["phase"] == "Failed" and not status.get("lastRetry"), status
    assert shop.namespace_exists(f"{shop.namespace}-again") is False
    shop.annotate("again", {"envbranch.io/retry": "1"})
    assert shop.wait_phase("again", "Active", timeout=120)["lastRetry"] == "1"


def test_display_names_are_unique_in_a_project(shop: Project) -> None:
    shop.apply_env("first", {"source": "production", "mode": "System", "displayName": "Shared_Name"})
    shop.wait_phase("first", "Active")
    shop.apply_env("second", {"source": "production", "mode": "System", "displayName": "shared_name"})
    status = shop.wait_stalled("second")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "DisplayNameTaken" and "first" in ready["message"]
    assert not shop.namespace_exists(f"{shop.namespace}-second")


def test_delete_removes_database_role_and_namespace(shop: Project) -> None:
    shop.apply_env("doomed", {"source": "production", "mode": "Full"})
    status = shop.wait_phase("doomed", "Active")
    uid = (shop.env("doomed") or {})["metadata"]["uid"]
    assert {t.kind for t in shop.tagged(uid)} == {"database", "role"}
    assert {t.cluster for t in shop.tagged(uid)} == {shop.core.read_namespace("kube-system").metadata.uid}
    shop.delete_env("doomed")
    shop.wait_gone("doomed")
    assert not shop.namespace_exists(status["namespace"])
    assert_nothing_left(shop, "doomed", uid)


def test_deleting_an_adopted_root_retains_its_database_and_namespace(shop: Project) -> None:
    prod_ns = f"{shop.namespace}-prod"
    prod_db = f"shop_{shop.namespace.replace('-', '_')}"
    uid = shop.uid("production")
    shop.delete_env("production")
    shop.wait_gone("production")
    assert shop.namespace_exists(prod_ns)
    # No tag of the gone Environment on the adopted database: the reaper would take it for an
    # orphan. Checked again after a whole reaper pass that began after the delete.
    assert shop.tagged(uid) == [] and not (shop.comment("database", prod_db) or "").startswith("envbranch:")
    shop.wait_reaper_pass()
    assert shop.database_exists(prod_db)
    assert shop.namespace_exists(prod_ns) and shop.core.read_namespace(prod_ns).metadata.deletion_timestamp is None


def test_ttl_deletes_the_branch_when_it_expires(shop: Project) -> None:
    shop.apply_env("brief", {"source": "production", "mode": "System", "ttl": "5s"})
    status = shop.wait_phase("brief", "Active")
    assert status["expiresAt"]
    uid = (shop.env("brief") or {})["metadata"]["uid"]
    shop.wait_gone("brief", timeout=90)
    assert_nothing_left(shop, "brief", uid)


def test_reaper_drops_databases_and_roles_no_environment_owns(project: Project) -> None:
    orphan_uid = str(uuid.uuid4())
    server = project.engine_server()
    engine.create_empty_database(server, f"orphan_{orphan_uid[:8]}", orphan_uid)
    engine.create_branch_role(server, f"orphan_{orphan_uid[:8]}_owner", orphan_uid)
    assert len(project.tagged(orphan_uid)) == 2
    # Tagged by the operator of another cluster sharing this server: never this cluster's to reap.
    foreign_uid, foreign_db = str(uuid.uuid4()), f"foreign_{orphan_uid[:8]}"
    with project.pg.connect(role=project.pg.admin) as conn:
        conn.execute(f'CREATE DATABASE "{foreign_db}"')
        conn.execute(f"COMMENT ON DATABASE \"{foreign_db}\" IS 'envbranch:uid={foreign_uid};cluster={uuid.uuid4()}'")
    try:
        wait_until(lambda: project.tagged(orphan_uid) == [], timeout=60, what="the reaper to drop the orphans")
        assert [t.name for t in project.tagged(foreign_uid)] == [foreign_db]
    finally:
        engine.drop_database(server, foreign_db)


def test_reapplying_the_same_manifests_changes_nothing(shop: Project, controlplane: ControlPlane) -> None:
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment",
                "metadata": {"name": "steady", "namespace": shop.namespace},
                "spec": {"source": "production", "mode": "System", "copy": {"environmentVariables": True}}}
    text = yaml.safe_dump(manifest)
    controlplane.kubectl("apply", "-f", "-", input=text)
    shop.wait_phase("steady", "Active")
    # Settled: Kopf has recorded the handled configuration and cleared its per-handler progress.
    kopf_done = {"operator.envbranch.io/last-handled-configuration", "operator.envbranch.io/kopf-managed"}

    def settled() -> bool:
        ann = (shop.env("steady") or {})["metadata"].get("annotations") or {}
        kopf = {k for k in ann if k.startswith("operator.envbranch.io/")}
        return "operator.envbranch.io/last-handled-configuration" in kopf and kopf <= kopf_done

    wait_until(settled, timeout=30, what="Kopf to finish with steady")
    before = shop.env("steady") or {}
    out = controlplane.kubectl("apply", "-f", "-", input=text)
    assert "unchanged" in out.stdout
    # Watch both resources for longer than the probe timer's period: an idle operator writes nothing.
    writes = []
    for plural in ("environments", "databaseservers"):
        rv = str(client.CustomObjectsApi(shop.api).list_namespaced_custom_object(
            GROUP, VERSION, shop.namespace, plural)["metadata"]["resourceVersion"])
        stream = watch.Watch().stream(client.CustomObjectsApi(shop.api).list_namespaced_custom_object,
                                      GROUP, VERSION, shop.namespace, plural, resource_version=rv,
                                      timeout_seconds=6)
        writes += [(e["type"], e["object"]["metadata"]["name"]) for e in stream]
    assert writes == []
    after = shop.env("steady") or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"] == manifest["spec"]


def test_wrong_admin_password_is_reported_without_the_password(project: Project) -> None:
    project.create_server("broken", password="not-the-password-123")
    wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "False"
                           for c in project.server_status("broken").get("conditions") or []),
               timeout=60, what="DatabaseServer broken to report not Ready")
    ready = next(c for c in project.server_status("broken")["conditions"] if c["type"] == "Ready")
    assert "password authentication failed" in ready["message"]
    assert "not-the-password-123" not in str(project.server_status("broken"))


def test_deleting_the_project_namespace_removes_every_branch(shop: Project) -> None:
    shop.apply_env("with-project", {"source": "production", "mode": "Full"})
    status = shop.wait_phase("with-project", "Active")
    uid = (shop.env("with-project") or {})["metadata"]["uid"]
    # Everything goes at once: Environments, the DatabaseServer and its admin Secret. The server and
    # the Secret are held until the branch's finalizer has used them to drop the database and role.
    shop.core.delete_namespace(shop.namespace)
    wait_until(lambda: not shop.namespace_exists(shop.namespace), timeout=120,
               what=f"project namespace {shop.namespace} to be gone")
    assert not shop.namespace_exists(status["namespace"])
    assert_nothing_left(shop, "with-project", uid)


def test_a_database_server_in_use_is_kept_until_its_environments_are_gone(shop: Project) -> None:
    shop.apply_env("user", {"source": "production", "mode": "System"})
    shop.wait_phase("user", "Active")
    shop.custom.delete_namespaced_custom_object(GROUP, VERSION, shop.namespace, "databaseservers", "main")
    # The operator has looked at the deletion and decided to wait: only then is "kept" a finding.
    in_use = wait_until(lambda: [m for r, m in shop.events("main", "DatabaseServer") if r == "ServerInUse"],
                        timeout=60, what="the ServerInUse Event on DatabaseServer main")
    assert "production" in in_use[0] and "user" in in_use[0], in_use
    secret = shop.core.read_namespaced_secret("main-admin", shop.namespace)
    assert "envbranch.io/database-server" in (secret.metadata.finalizers or [])
    server = shop.custom.get_namespaced_custom_object(GROUP, VERSION, shop.namespace, "databaseservers", "main")
    assert server["metadata"]["deletionTimestamp"]
    for name in ("user", "production"):
        shop.delete_env(name)
    wait_until(lambda: not shop.custom.list_namespaced_custom_object(
        GROUP, VERSION, shop.namespace, "databaseservers")["items"], timeout=60, what="the DatabaseServer to go")
    secret = shop.core.read_namespaced_secret("main-admin", shop.namespace)
    assert "envbranch.io/database-server" not in (secret.metadata.finalizers or [])


def test_unreachable_server_is_reported_as_a_condition(project: Project) -> None:
    from envbranch_testing.processes import free_port

    project.create_server("nowhere")
    project.custom.patch_namespaced_custom_object(GROUP, VERSION, project.namespace, "databaseservers", "nowhere",
                                                  {"spec": {"port": free_port()}})
    wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "False" and c["reason"] == "Unreachable"
                           for c in project.server_status("nowhere").get("conditions") or []),
               timeout=60, what="DatabaseServer nowhere to report Unreachable")
    ready = next(c for c in project.server_status("nowhere")["conditions"] if c["type"] == "Ready")
    assert "connection" in ready["message"].lower() or "refused" in ready["message"].lower(), ready
    assert project.pg.admin.password not in str(project.server_status("nowhere"))


def test_a_retained_branch_keeps_its_database_and_role_and_the_reaper_leaves_them(shop: Project) -> None:
    shop.apply_env("keeper", {"source": "production", "mode": "System", "deletionPolicy": "Retain"})
    status = shop.wait_phase("keeper", "Active")
    uid = shop.uid("keeper")
    shop.delete_env("keeper")
    shop.wait_gone("keeper")
    # Untagged: the reaper only ever looks at tagged objects. Checked after a reaper pass that
    # began after the delete, so a tag left behind would have cost the database and role.
    assert shop.tagged(uid) == []
    shop.wait_reaper_pass()
    role = engine.branch_role_name(shop.namespace, "keeper")
    assert shop.database_exists(status["database"]["name"]) and shop.role_exists(role)
    assert shop.comment("database", status["database"]["name"]) is None and shop.comment("role", role) is None
    assert shop.namespace_exists(status["namespace"])
    shop.created_namespaces.append(status["namespace"])  # kept on purpose: the fixture removes it


def test_a_database_name_taken_by_someone_else_fails_and_is_left_alone(shop: Project) -> None:
    taken = engine.branch_database_name(shop.namespace, "squatter")
    with shop.pg.connect(role=shop.pg.admin) as conn:
        conn.execute(f'CREATE DATABASE "{taken}"')
    shop.apply_env("squatter", {"source": "production", "mode": "System"})
    status = shop.wait_stalled("squatter")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "DatabaseConflict", ready
    assert status.get("inventory") in (None, [])
    assert shop.database_exists(taken)
    shop.delete_env("squatter")
    shop.wait_gone("squatter", timeout=60)
    # Its finalizer must not drop the name either.
    assert shop.database_exists(taken) and shop.comment("database", taken) is None


def test_a_retained_branch_deleted_before_it_is_active_keeps_nothing(shop: Project) -> None:
    shop.apply_env("unfinished", {"source": "production", "mode": "System", "deletionPolicy": "Retain"},
                   annotations={"envbranch.io/inject-pause": "credentials"})
    wait_until(lambda: shop.status("unfinished").get("progress", {}).get("step") == "credentials"
               and "Paused" in shop.event_reasons("unfinished"), timeout=60,
               what="unfinished to pause at its credentials step")
    uid = shop.uid("unfinished")
    assert sorted(t.kind for t in shop.tagged(uid)) == ["database", "role"]  # made before the pause
    assert shop.namespace_exists(f"{shop.namespace}-unfinished")
    shop.delete_env("unfinished")
    shop.wait_gone("unfinished", timeout=60)
    assert_nothing_left(shop, "unfinished", uid)


def test_a_credentials_secret_that_is_not_ours_is_never_overwritten(project: Project) -> None:
    ns = f"{project.namespace}-adopted"
    project.create_namespace(ns)
    project.core.create_namespaced_secret(ns, {"metadata": {"name": "app-db"}, "stringData": {"password": "theirs"}})
    project.apply_env("app", {"namespace": ns, "database": {"serverRef": "main"}})
    status = project.wait_stalled("app")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SecretConflict", ready
    secret = project.core.read_namespaced_secret("app-db", ns)
    assert secret.data == {"password": "dGhlaXJz"} and not (secret.metadata.labels or {})
    assert project.tagged(project.uid("app")) == []


def test_a_shortened_ttl_takes_effect(shop: Project) -> None:
    shop.apply_env("shortened", {"source": "production", "mode": "System", "ttl": "10h"})
    before = shop.wait_phase("shortened", "Active")["expiresAt"]
    uid = shop.uid("shortened")
    shop.custom.patch_namespaced_custom_object(GROUP, VERSION, shop.namespace, "environments", "shortened",
                                               {"spec": {"ttl": "2s"}})
    wait_until(lambda: (shop.status("shortened").get("expiresAt") or before) < before or shop.env("shortened") is None,
               timeout=30, what="expiresAt to follow the new ttl")
    shop.wait_gone("shortened", timeout=60)
    assert_nothing_left(shop, "shortened", uid)
