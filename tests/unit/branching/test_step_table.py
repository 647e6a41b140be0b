"""The step table: each step declared once, in order, with a removal for every kind it records."""

from __future__ import annotations

import threading

import pytest
from core_fakes import PROJECT, World

from envbranch.branching.errors import Waiting
from envbranch.branching.steps import CONDITIONS, STEPS, UNDO


def test_names_are_unique_and_progress_only_grows() -> None:
    names = [s.name for s in STEPS]
    assert len(set(names)) == len(names)
    percents = [s.percent for s in STEPS if s.percent is not None]
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] < 100
    assert all(s.part_of in names for s in STEPS if s.part_of)
    assert all((s.percent is None) == (s.part_of is not None) for s in STEPS)


def test_the_steps_the_fault_switch_names_are_the_ones_that_run() -> None:
    assert [s.name for s in STEPS if s.part_of is None] == ["namespace", "database", "credentials", "configuration"]
    assert CONDITIONS == {"database": "DatabaseReady", "credentials": "CredentialsReady",
                          "configuration": "ConfigCopied"}


def test_every_recorded_kind_has_its_removal() -> None:
    assert set(UNDO) == {"Namespace", "Role", "Database", "Secret", "ConfigMap"}


def test_progress_rides_on_each_steps_first_write(world: World) -> None:
    world.add_env("production")
    world.reconcile("production")
    steps = [p["progress"]["step"] for _, p in world.kube.patches if "progress" in p]
    assert steps == ["namespace", "database", "credentials", "done"]


def test_a_long_copy_waits_for_a_slot_when_the_lane_is_full(world: World) -> None:
    world.add_active_source()
    world.pg.lane_only = True
    world.pg.clone_gate = threading.Event()
    world.add_env("one", {"source": "production", "mode": "Full"})
    world.add_env("two", {"source": "production", "mode": "Full"})
    with pytest.raises(Waiting):
        world.reconcile("one")
    with pytest.raises(Waiting) as wait:
        world.reconcile("two")
    assert wait.value.reason == "WaitingForCopySlot" and "1 long copies at once" in wait.value.message
    assert world.condition("two", "DatabaseReady")["reason"] == "WaitingForCopySlot"
    world.pg.clone_gate.set()


def test_a_registration_configmap_of_someone_else_is_a_conflict(world: World) -> None:
    world.add_env("production")
    uid = world.env("production")["metadata"]["uid"]
    world.kube.namespaces[f"{PROJECT}-production"] = {"envbranch.io/uid": uid}
    world.kube.config[("ConfigMap", f"{PROJECT}-production", "envbranch-environment")] = {
        "metadata": {"name": "envbranch-environment", "labels": {"envbranch.io/uid": "someone-else"}}}
    world.reconcile("production")
    ready = world.condition("production", "Ready")
    assert ready["reason"] == "ConfigConflict" and ready["message"].startswith("step credentials failed")
    assert world.condition("production", "CredentialsReady")["reason"] == "ConfigConflict"


def test_a_configmap_from_before_uid_labels_is_ours_by_name_in_our_own_namespace(world: World) -> None:
    world.add_env("production")
    world.kube.config[("ConfigMap", f"{PROJECT}-production", "envbranch-environment")] = {
        "metadata": {"name": "envbranch-environment", "labels": {"envbranch.io/environment": "production"}}}
    world.reconcile("production")
    assert world.status("production")["phase"] == "Active"
    registration = world.kube.config[("ConfigMap", f"{PROJECT}-production", "envbranch-environment")]
    assert registration["metadata"]["labels"]["envbranch.io/uid"] == world.env("production")["metadata"]["uid"]
