"""Retries, waits, resumed rollbacks, the retry annotation, deletion, ttl expiry and the copy lane."""

from __future__ import annotations

import threading
import time

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch import postgres as engine
from envbranch.branching import environment, watch
from envbranch.branching.errors import Transient, Waiting

NS = f"{PROJECT}-feature"
BRANCH = {"source": "production", "mode": "System"}


def test_a_transient_error_is_retried_then_given_up_after_five(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.pg.fail["clone"] = engine.TransientError("connection refused")
    with pytest.raises(Transient) as exc:
        world.reconcile("feature", retry=4)
    assert exc.value.step == "database"
    assert world.status("feature")["phase"] == "Branching"
    assert world.reasons("feature")[-1] == "Retrying"
    assert [e for e in world.status("feature")["inventory"] if e["kind"] == "Database"]  # kept for the retry
    world.pg.fail["clone"] = engine.TransientError("connection refused")
    world.reconcile("feature", retry=5)
    ready = world.condition("feature", "Ready")
    assert (ready["reason"], ready["message"]) == ("Error", "step database failed: connection refused; rolled back")
    assert world.status("feature")["phase"] == "Failed" and not world.pg.databases


def test_a_transient_step_error_says_when_it_was_given_up(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.pg.fail["clone"] = Transient("database", "SourceBusy", "the source has other sessions")
    world.reconcile("feature", retry=5)
    ready = world.condition("feature", "Ready")
    assert ready["reason"] == "SourceBusy"
    assert ready["message"] == ("step database failed: the source has other sessions (gave up after 5 retries); "
                                "rolled back")


def test_a_retry_after_a_transient_error_converges(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.kube.fail["create ConfigMap"] = engine.TransientError("connection reset")
    with pytest.raises(Transient) as exc:
        world.reconcile("feature")
    assert exc.value.step == "credentials"  # the registration is reported as part of the credentials step
    world.reconcile("feature", retry=1)
    assert world.status("feature")["phase"] == "Active"
    assert world.reasons("feature").count("CredentialsCreated") == 1


def test_a_server_gone_mid_branch_is_waited_for_and_nothing_rolled_back(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.pg.fail["clone"] = Waiting("ServerNotFound", "DatabaseServer 'main' not found in shop", 5)
    with pytest.raises(Waiting):
        world.reconcile("feature")
    assert world.status("feature")["phase"] == "Branching" and world.kube.namespaces


def test_a_failed_environment_stays_failed_until_the_retry_annotation(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH, annotations={"envbranch.io/inject-fault": "database"})
    world.reconcile("feature")
    patches = len(world.kube.patches)
    world.reconcile("feature")
    assert len(world.kube.patches) == patches
    world.set_meta("feature", annotations={"envbranch.io/retry": "1"})
    world.reconcile("feature")
    assert world.status("feature")["phase"] == "Active" and world.status("feature")["lastRetry"] == "1"
    assert "Retrying" in world.reasons("feature")


def test_a_spec_change_retries_a_failed_environment(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH, annotations={"envbranch.io/inject-fault": "database"})
    world.reconcile("feature")
    world.set_meta("feature", annotations={}, generation=2)
    world.reconcile("feature")
    assert world.status("feature")["phase"] == "Active" and world.status("feature")["observedGeneration"] == 2


def test_a_rollback_stopped_half_way_is_resumed_not_the_branch(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH, annotations={"envbranch.io/inject-fault": "configuration"})
    world.pg.fail["drop Database"] = engine.TransientError("connection refused")
    with pytest.raises(Transient) as exc:
        world.reconcile("feature")
    assert exc.value.reason == "CleanupIncomplete"
    status = world.status("feature")
    assert status["phase"] == "Failed" and world.condition("feature", "Reconciling")["status"] == "True"
    assert world.condition("feature", "Ready")["message"].endswith("; rolling back")
    assert [e["kind"] for e in status["inventory"]] == ["Namespace", "Role", "Database"]
    world.set_meta("feature", annotations={})
    world.reconcile("feature")
    assert not world.status("feature")["inventory"] and not world.pg.databases and not world.pg.roles
    assert world.condition("feature", "Ready")["message"].endswith("; rolled back")
    assert world.condition("feature", "Stalled")["status"] == "True"
    assert "NamespaceCreated" in world.reasons("feature") and world.reasons("feature")[-1] == "RolledBack"


def test_deletion_removes_everything_then_releases(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    world.delete("feature")
    assert world.status("feature")["phase"] == "Deleting" and not world.status("feature")["inventory"]
    assert world.reasons("feature")[-2:] == ["Deleting", "Deleted"]
    assert not world.kube.namespaces and not world.pg.databases and not world.pg.roles


def test_deletion_with_retain_keeps_everything_and_untags_it(world: World) -> None:
    world.add_env("production", {"deletionPolicy": "Retain"})
    world.reconcile("production")
    world.delete("production")
    assert world.reasons("production")[-1] == "Retained"
    assert world.pg.databases == {(SERVER, "shop__production"): None}
    assert world.pg.roles == {(SERVER, "shop__production_owner"): None}
    assert world.kube.namespaces


def test_retain_of_a_never_active_environment_removes_its_partial_work(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", {**BRANCH, "deletionPolicy": "Retain"})
    world.pg.fail["clone"] = engine.TransientError("connection refused")
    with pytest.raises(Transient):
        world.reconcile("feature")
    world.delete("feature")
    assert not world.kube.namespaces and not world.pg.databases and world.reasons("feature")[-1] == "Deleted"


def test_ttl_expiry_deletes_the_environment(world: World) -> None:
    body = world.add_env("production", {"ttl": "1h"})
    environment.expire_environment(world.ctx, body, "1h")
    assert ("production", "Expired", "ttl 1h has passed: deleting the environment", False) in world.kube.events
    assert ("environments", PROJECT, "production") not in world.kube.objects


def test_a_full_dump_runs_in_the_copy_lane_and_is_picked_up(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", {"source": "production", "mode": "Full"})
    world.pg.lane_only = True
    world.pg.clone_gate = threading.Event()
    with pytest.raises(Waiting) as wait:
        world.reconcile("feature")
    assert wait.value.reason == "Copying"
    cond = world.condition("feature", "DatabaseReady")
    assert (cond["status"], cond["reason"]) == ("False", "Copying")
    world.pg.clone_gate.set()
    deadline = time.monotonic() + 5
    while True:
        try:
            world.reconcile("feature")
            break
        except Waiting:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert world.status("feature")["database"]["strategy"] == "Dump"
    assert world.status("feature")["phase"] == "Active"


def test_deleting_during_a_copy_cuts_it_off_and_leaves_removal_to_the_finalizer(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "DELETION_POLL_S", 0.05)
    world.add_active_source()
    world.add_env("feature", BRANCH)
    world.pg.clone_gate = threading.Event()
    threading.Timer(0.2, lambda: world.set_meta("feature", deletionTimestamp="2030-01-01T00:00:01Z")).start()
    threading.Timer(0.6, world.pg.clone_gate.set).start()
    world.reconcile("feature")
    assert world.reasons("feature")[-1] == "Cancelled"
    assert "step database stopped" in world.kube.events[-1][2]
    assert world.pg.removed == ["Database shop__feature"]  # cut off; the rest is the finalizer's
    assert world.status("feature")["phase"] == "Branching"
    world.delete("feature")
    assert not world.kube.namespaces and not world.pg.roles


def test_the_time_left_counts_from_creation(world: World) -> None:
    body = world.add_env("production", {"ttl": "1h30m"})
    assert environment.seconds_left(body, "1h30m") > 0
    body["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    assert environment.seconds_left(body, "1h30m") < 0
