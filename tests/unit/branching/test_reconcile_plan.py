"""Step 1 (validate/plan): what waits, what is refused, what is resolved, all before anything is made."""

from __future__ import annotations

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch.api import common
from envbranch.branching.errors import Waiting
from envbranch.kube import resources


def test_a_branch_waits_for_a_source_that_does_not_exist_yet(world: World) -> None:
    world.add_env("feature", {"source": "production", "mode": "System"})
    with pytest.raises(Waiting) as wait:
        world.reconcile("feature")
    assert wait.value.reason == "SourceNotFound" and wait.value.delay == 5
    status = world.status("feature")
    assert status["phase"] == "Pending"
    assert world.condition("feature", "SourceReady")["status"] == "False"
    assert world.condition("feature", "SourceReady")["reason"] == "SourceNotFound"
    assert world.condition("feature", "Reconciling")["status"] == "True"
    assert world.condition("feature", "Stalled")["status"] == "False"
    assert "inventory" not in status and not world.kube.namespaces


def test_a_branch_waits_for_its_source_to_be_active(world: World) -> None:
    world.add_env("production", status={"phase": "Branching"})
    world.add_env("feature", {"source": "production", "mode": "System"})
    with pytest.raises(Waiting) as wait:
        world.reconcile("feature")
    assert wait.value.reason == "SourceNotReady" and "(it is Branching)" in wait.value.message


def test_waiting_again_writes_nothing_new(world: World) -> None:
    world.add_env("feature", {"source": "production", "mode": "System"})
    for _ in range(2):
        with pytest.raises(Waiting):
            world.reconcile("feature")
    assert len(world.kube.patches) == 1


@pytest.mark.parametrize(("ready", "reason"), [(None, "ServerNotFound"), (False, "ServerNotReady")])
def test_a_root_waits_for_its_database_server(world: World, ready: bool | None, reason: str) -> None:
    if ready is not None:
        world.add_server("other", ready=ready)
    world.add_env("production", {"database": {"serverRef": "other"}})
    with pytest.raises(Waiting) as wait:
        world.reconcile("production")
    assert wait.value.reason == reason


def _refused(world: World, name: str, reason: str) -> str:
    world.reconcile(name)
    status = world.status(name)
    assert status["phase"] == "Failed" and status["observedGeneration"] == 1
    ready = world.condition(name, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert world.condition(name, "Stalled")["status"] == "True"
    assert world.condition(name, "Reconciling")["status"] == "False"
    assert "inventory" not in status and not world.kube.namespaces and not world.pg.databases
    assert (name, reason, ready["message"], True) in world.kube.events
    return str(ready["message"])


def test_a_branch_of_itself_is_refused(world: World) -> None:
    world.add_env("feature", {"source": "feature", "mode": "System"})
    assert "itself" in _refused(world, "feature", "InvalidSource")


def test_a_source_without_a_database_is_refused(world: World) -> None:
    world.add_env("production", status={"phase": "Active"})
    world.add_env("feature", {"source": "production", "mode": "System"})
    assert "reports no database" in _refused(world, "feature", "InvalidSource")


def test_a_namespace_name_over_63_characters_is_refused(world: World) -> None:
    world.add_env("e" * 60)
    assert "63" in _refused(world, "e" * 60, "NameTooLong")


def test_a_display_name_taken_in_the_project_is_refused(world: World) -> None:
    world.add_env("one", {"displayName": "Shop_Main"})
    world.add_env("two", {"displayName": "shop_main"})
    assert "'one'" in _refused(world, "two", "DisplayNameTaken")


def test_two_servers_need_a_server_ref(world: World) -> None:
    world.add_server("second")
    world.add_env("production")
    assert "has 2 DatabaseServers" in _refused(world, "production", "ServerRequired")


def test_a_database_not_listed_as_adoptable_is_refused(world: World) -> None:
    world.add_env("production", {"database": {"name": "shop"}})
    assert "adoptableDatabases" in _refused(world, "production", "AdoptionNotAllowed")


def test_the_source_uid_is_pinned_on_first_plan(world: World) -> None:
    source = world.add_active_source()
    world.add_env("feature", {"source": "production", "mode": "System"})
    world.reconcile("feature")
    assert world.status("feature")["parentUid"] == source["metadata"]["uid"]
    assert world.status("feature")["phase"] == "Active"


def test_a_replaced_source_is_never_copied_from_and_partial_work_is_rolled_back(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", {"source": "production", "mode": "System"},
                  status={"parentUid": "old-uid", "phase": "Branching",
                          "inventory": [{"kind": "Namespace", "name": f"{PROJECT}-feature"}]})
    world.kube.namespaces[f"{PROJECT}-feature"] = {"envbranch.io/uid": world.env("feature")["metadata"]["uid"]}
    world.reconcile("feature")
    status = world.status("feature")
    assert status["phase"] == "Failed" and not status.get("inventory")
    assert world.condition("feature", "Ready")["reason"] == "SourceReplaced"
    assert "rolled back" in world.condition("feature", "Ready")["message"]
    assert world.reasons("feature") == ["StepFailed", "RolledBack"]
    assert not world.kube.namespaces


def test_recorded_names_are_reused(world: World) -> None:
    world.add_env("production", status={"inventory": [{"kind": "Database", "name": "legacy_db", "server": SERVER},
                                                      {"kind": "Role", "name": "legacy_role", "server": SERVER}]})
    world.reconcile("production")
    assert world.status("production")["database"]["name"] == "legacy_db"
    assert (SERVER, "legacy_role") in world.pg.roles


def test_a_full_branch_of_a_personal_data_root_without_masking_fails_and_makes_nothing(world: World) -> None:
    root = world.add_active_source()
    root["spec"]["personalData"] = True
    world.add_env("feature", {"source": "production", "mode": "Full"})
    world.reconcile("feature")
    status = world.status("feature")
    assert status["phase"] == "Failed" and world.condition("feature", "Ready")["reason"] == "MaskingRequired"
    assert "spec.database.masking" in world.condition("feature", "Ready")["message"]
    assert "inventory" not in status and not world.kube.namespaces and not world.pg.databases
    # Schema only holds no rows: allowed; its status says it holds no personal data.
    world.add_env("schema-only", {"source": "production", "mode": "System"})
    world.reconcile("schema-only")
    assert world.status("schema-only")["phase"] == "Active"


def test_masking_is_required_down_unmasked_full_branches_of_a_root_marked_later(world: World) -> None:
    root = world.add_active_source()
    world.add_env("staging", {"source": "production", "mode": "Full"})
    world.reconcile("staging")
    assert world.status("staging")["phase"] == "Active"
    root["spec"]["personalData"] = True  # marked after staging copied the rows unmasked
    world.add_env("from-staging", {"source": "staging", "mode": "Full"})
    world.reconcile("from-staging")
    assert world.condition("from-staging", "Ready")["reason"] == "MaskingRequired"
    assert "staging" in world.condition("from-staging", "Ready")["message"]


def test_a_masked_source_is_inherited_and_may_be_copied_as_it_is(world: World) -> None:
    world.add_env("masked", {"source": "production", "mode": "Full"}, status={
        "phase": "Active", "namespace": f"{PROJECT}-masked",
        "database": {"server": SERVER, "name": f"{PROJECT}_masked"}, "masking": {"policy": "pii", "columns": 3}})
    world.add_env("child", {"source": "masked", "mode": "Full"})
    world.reconcile("child")
    status = world.status("child")
    assert status["phase"] == "Active", status
    assert status["masking"] == {"policy": "pii", "columns": 3, "inherited": True}
    assert world.condition("child", "DataMasked")["reason"] == "Inherited"
    assert world.pg.cloned_with_masking is None  # nothing masked twice: the source's rows are masked already


def test_a_masked_branch_waits_for_its_policy_and_key_and_refuses_a_short_key(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.add_active_source()
    world.add_env("qa", {"source": "production", "mode": "Full", "database": {"masking": "pii"}})
    with pytest.raises(Waiting) as wait:
        world.reconcile("qa")
    assert wait.value.reason == "MaskingPolicyNotFound"
    world.kube.objects[(common.MASKINGPOLICIES, PROJECT, "pii")] = {
        "metadata": {"name": "pii"}, "spec": {"keySecretRef": {"name": "masking-key"}}}
    secrets: dict[str, dict[str, bytes]] = {}
    monkeypatch.setattr(resources, "read_values", lambda kube, kind, ns, name, keys: secrets.get(name))
    with pytest.raises(Waiting) as wait:
        world.reconcile("qa")
    assert wait.value.reason == "MaskingKeyNotFound"
    secrets["masking-key"] = {"key": b"tooshort-secret"}
    world.reconcile("qa")
    ready = world.condition("qa", "Ready")
    assert world.status("qa")["phase"] == "Failed" and ready["reason"] == "MaskingKeyInvalid"
    assert "tooshort" not in ready["message"] and "at least 16 bytes" in ready["message"]
    assert not world.kube.namespaces and not world.pg.databases
