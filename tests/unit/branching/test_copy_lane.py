"""The copy lane runs at most `slots` copies at once, hands results and errors back, and cancels."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from envbranch.branching.copy_lane import CopyLane
from envbranch.branching.errors import Cancelled, StepFailed


def test_at_most_slots_copies_run_and_the_rest_wait() -> None:
    lane = CopyLane(slots=2)
    release = threading.Event()

    def copy() -> dict[str, Any]:
        release.wait(10)
        return {"strategy": "Dump"}

    jobs = [lane.submit(f"uid-{i}", copy) for i in range(5)]
    assert lane.submit("uid-0", copy) is jobs[0]  # one job per Environment
    deadline = time.monotonic() + 5
    while lane.stats() != (2, 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lane.stats() == (2, 3)
    assert [j.state for j in jobs].count("queued") == 3
    release.set()
    for job in jobs:
        assert job.finished.wait(10)
        assert job.outcome() == {"strategy": "Dump"}
    assert lane.stats() == (0, 0)


def test_errors_reach_the_reconcile_that_collects_them() -> None:
    lane = CopyLane(slots=1)

    def copy() -> dict[str, Any]:
        raise StepFailed("database", "SourceGone", "the source database was dropped")

    job = lane.submit("uid", copy)
    assert job.finished.wait(10)
    with pytest.raises(StepFailed, match="source database was dropped"):
        job.outcome()
    lane.forget("uid")
    assert lane.get("uid") is None


def test_a_queued_copy_is_cancelled_at_once_and_never_runs() -> None:
    lane = CopyLane(slots=1)
    release = threading.Event()
    ran: list[str] = []

    def copy(key: str) -> dict[str, Any]:
        ran.append(key)
        release.wait(10)
        return {}

    first = lane.submit("first", lambda: copy("first"))
    second = lane.submit("second", lambda: copy("second"))
    cancelled = lane.cancel("second")
    assert cancelled is second and second.done
    with pytest.raises(Cancelled):
        second.outcome()
    release.set()
    assert first.finished.wait(10)
    assert ran == ["first"]
    assert lane.cancel("nobody") is None
