"""Steps 2-7 on the fakes: what each makes, in which order it is recorded, and the rollback when any
of them fails."""

from __future__ import annotations

from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch import postgres as engine

NS = f"{PROJECT}-feature"
BRANCH = {"source": "production", "mode": "System"}


def _config(world: World, kind: str, name: str, category: str, **extra: Any) -> None:
    world.kube.config[(kind, f"{PROJECT}-production", name)] = {
        "metadata": {"name": name, "namespace": f"{PROJECT}-production",
                     "labels": {"envbranch.io/category": category}, **extra}, "data": {"k": "dg=="}}


def _inventory(world: World, name: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["name"]) for e in world.status(name).get("inventory") or []]


def test_a_root_is_made_in_order_and_reported_active(world: World) -> None:
    world.add_env("production", {"ttl": "2h"})
    world.reconcile("production")
    status = world.status("production")
    assert status["phase"] == "Active" and status["observedGeneration"] == 1
    assert status["namespace"] == f"{PROJECT}-production" and status["credentialsSecret"] == "production-db"
    assert status["database"] == {"server": SERVER, "name": "shop__production", "strategy": "Empty", "bytes": 100,
                                  "seconds": 0.1}
    assert status["progress"] == {"step": "done", "percent": 100}
    assert status["expiresAt"] == "2030-01-01T02:00:00Z" and status["branchedAt"]
    assert _inventory(world, "production") == [
        ("Namespace", f"{PROJECT}-production"), ("Role", "shop__production_owner"), ("Database", "shop__production"),
        ("Secret", "production-db"), ("ConfigMap", "envbranch-environment")]
    for type_, status_, reason in [("Ready", "True", "Active"), ("Reconciling", "False", "Active"),
                                   ("Stalled", "False", "Active"), ("SourceReady", "True", "SourceActive"),
                                   ("DatabaseReady", "True", "Created"), ("CredentialsReady", "True", "Created")]:
        cond = world.condition("production", type_)
        assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (status_, reason, 1), type_
    assert world.reasons("production") == ["NamespaceCreated", "DatabaseCreated", "CredentialsCreated", "Active"]
    uid = world.env("production")["metadata"]["uid"]
    assert world.kube.namespaces[f"{PROJECT}-production"]["envbranch.io/uid"] == uid
    registration = world.kube.config[("ConfigMap", f"{PROJECT}-production", "envbranch-environment")]
    assert registration["data"]["databaseName"] == "shop__production"
    assert registration["metadata"]["labels"] == {"envbranch.io/environment": "production", "envbranch.io/uid": uid}


def test_an_active_observed_environment_is_left_alone(world: World) -> None:
    world.add_env("production")
    world.reconcile("production")
    patches, events = len(world.kube.patches), len(world.kube.events)
    world.reconcile("production")
    assert (len(world.kube.patches), len(world.kube.events)) == (patches, events)


def test_a_rename_of_an_active_environment_is_observed_without_a_new_branch(world: World) -> None:
    world.add_env("production")
    world.add_env("other", {"displayName": "taken"})
    world.reconcile("production")
    world.kube.objects[("environments", PROJECT, "production")]["spec"]["displayName"] = "Taken"
    world.set_meta("production", generation=2)
    world.reconcile("production")
    ready = world.condition("production", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "DisplayNameTaken")
    assert world.status("production")["observedGeneration"] == 1
    world.kube.objects[("environments", PROJECT, "production")]["spec"]["displayName"] = "Free"
    world.reconcile("production")
    assert world.status("production")["observedGeneration"] == 2


def test_a_branch_copies_what_its_flags_ask_and_never_auth_providers(world: World) -> None:
    world.add_active_source()
    _config(world, "ConfigMap", "files", "file-providers")
    _config(world, "Secret", "hooks", "gateway-routes", annotations={"envbranch.io/rotate-keys": "k"})
    _config(world, "Secret", "vars", "environment-variables")
    _config(world, "Secret", "login", "auth-providers")
    world.add_env("feature", {**BRANCH, "copy": {"fileProviders": True, "gatewayRoutes": True}})
    world.reconcile("feature")
    status = world.status("feature")
    assert status["phase"] == "Active" and status["parent"] == "production" and status["branchMode"] == "System"
    assert status["copied"] == {"fileProviders": 1, "gatewayRoutes": 1}
    assert status["rotations"] == [{"secret": "hooks", "keys": ["k"]}]
    assert status["skipped"] == [{"kind": "Secret", "name": "login", "reason": "auth providers are never copied"}]
    assert _inventory(world, "feature")[-2:] == [("ConfigMap", "files"), ("Secret", "hooks")]
    assert world.reasons("feature") == ["NamespaceCreated", "DatabaseCloned", "CredentialsCreated",
                                        "AuthProviderSkipped", "ConfigCopied", "SecretRotated", "Active"]
    assert world.condition("feature", "ConfigCopied")["message"] == "2 objects copied"
    assert ("Secret", NS, "vars") not in world.kube.config


STEP_CONDITION = {"namespace": None, "database": "DatabaseReady", "credentials": "CredentialsReady",
                  "configuration": "ConfigCopied", "configuration/file-providers": None}


@pytest.mark.parametrize("step", list(STEP_CONDITION))
def test_a_failure_at_any_step_rolls_everything_back(world: World, step: str) -> None:
    world.add_active_source()
    _config(world, "ConfigMap", "files", "file-providers")
    world.add_env("feature", {**BRANCH, "copy": {"fileProviders": True}},
                  annotations={"envbranch.io/inject-fault": step})
    world.reconcile("feature")
    status = world.status("feature")
    assert status["phase"] == "Failed" and not status.get("inventory")
    assert status["progress"] == {"step": step, "percent": 100}
    ready = world.condition("feature", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InjectedFault")
    assert ready["message"].endswith("; rolled back") and f"step {step} failed" in ready["message"]
    assert world.condition("feature", "Stalled")["status"] == "True"
    assert world.condition("feature", "Reconciling")["status"] == "False"
    cond = STEP_CONDITION[step]
    if cond:
        assert (world.condition("feature", cond)["status"], world.condition("feature", cond)["reason"]) == \
            ("False", "InjectedFault")
    assert world.reasons("feature")[-2:] == ["StepFailed", "RolledBack"]
    assert not world.kube.namespaces and not world.pg.databases and not world.pg.roles
    assert not [k for k in world.kube.config if k[1] == NS]


def test_removal_goes_newest_first_with_roles_last(world: World) -> None:
    world.add_active_source()
    _config(world, "ConfigMap", "files", "file-providers")
    world.add_env("feature", {**BRANCH, "copy": {"fileProviders": True}},
                  annotations={"envbranch.io/inject-fault": "configuration/file-providers"})
    world.reconcile("feature")
    assert world.kube.removed + world.pg.removed == [
        "ConfigMap envbranch-environment", "Secret feature-db", f"Namespace {NS}",
        "Database shop__feature", "Role shop__feature_owner"]


def test_something_not_ours_in_the_way_fails_the_step(world: World) -> None:
    world.add_active_source()
    world.kube.namespaces[NS] = {"envbranch.io/uid": "someone-else"}
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    assert world.condition("feature", "Ready")["reason"] == "NamespaceConflict"
    assert world.kube.namespaces[NS] == {"envbranch.io/uid": "someone-else"}  # never removed


def test_a_database_of_someone_else_is_left_in_place_on_rollback(world: World) -> None:
    world.add_active_source()
    world.pg.databases[(SERVER, "shop__feature")] = "someone-else"
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    assert world.condition("feature", "DatabaseReady")["reason"] == "DatabaseConflict"
    assert world.pg.databases == {(SERVER, "shop__feature"): "someone-else"}
    assert "NotOurs" in world.reasons("feature")


def test_a_secret_of_someone_else_fails_the_credentials_step(world: World) -> None:
    world.add_active_source()
    world.kube.namespaces[NS] = {}
    world.add_env("feature", BRANCH)
    world.kube.namespaces[NS] = {"envbranch.io/uid": world.env("feature")["metadata"]["uid"]}
    world.kube.config[("Secret", NS, "feature-db")] = {"metadata": {"name": "feature-db", "labels": {
        "envbranch.io/uid": "someone-else"}}}
    world.reconcile("feature")
    assert world.condition("feature", "CredentialsReady")["reason"] == "SecretConflict"
    assert "Secret feature-db" not in world.kube.removed  # only with its namespace, which was ours


def test_an_adopting_root_records_nothing_it_did_not_make(world: World) -> None:
    world.add_server(SERVER, adoptable=["shop"])
    world.kube.namespaces["shop-prod"] = {}
    world.pg.databases[(SERVER, "shop")] = None
    world.pg.public_connect.add("shop")
    world.add_env("production", {"namespace": "shop-prod", "database": {"name": "shop"}})
    world.reconcile("production")
    status = world.status("production")
    assert status["phase"] == "Active" and not status.get("inventory")
    assert status["database"] == {"server": SERVER, "name": "shop", "strategy": "Adopted"}
    assert world.condition("production", "DatabaseReady")["reason"] == "Adopted"
    assert world.reasons("production") == ["PublicConnect", "Active"]
    assert "credentialsSecret" not in status


def test_an_adopted_namespace_that_does_not_exist_fails(world: World) -> None:
    world.add_env("production", {"namespace": "shop-prod"})
    world.reconcile("production")
    assert world.condition("production", "Ready")["reason"] == "NamespaceNotFound"


def test_an_unexpected_error_is_reported_without_its_text(world: World) -> None:
    world.add_active_source()
    world.pg.fail["clone"] = RuntimeError("row (secret) leaked")
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    ready = world.condition("feature", "Ready")
    assert ready["reason"] == "Error" and "RuntimeError" in ready["message"] and "leaked" not in ready["message"]
    assert world.condition("feature", "DatabaseReady")["reason"] == "Error"


def test_a_permanent_engine_error_rolls_back_with_its_message(world: World) -> None:
    world.add_active_source()
    world.pg.fail["create_role"] = engine.PermanentError("permission denied to create role")
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    assert world.condition("feature", "CredentialsReady")["message"] == "permission denied to create role"
