"""Deleting an Environment while its database is being cloned: the finalizer cancels the copy,
removes everything and releases the object within a bounded time."""

from __future__ import annotations

import time

import pytest
from faults import BIG_ROOT, DUMP, assert_nothing_left, source_database, wait_copying

from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

RELEASE_BOUND_S = 60


@pytest.mark.reliability("Environment deleted during a clone", f"a Cancelled and a Deleted Event, never "
                         f"DatabaseCloned or Active; released within {RELEASE_BOUND_S} s; no namespace, no database or "
                         "role by name or UID tag")
def test_delete_during_a_clone_cancels_the_copy_and_releases_in_bounded_time(big: Project, record: Recorder) -> None:
    name = "deleted-mid-clone"
    big.apply_env(name, {"source": BIG_ROOT, "mode": "Full", "database": DUMP})
    uid = big.uid(name)
    wait_copying(big.pg, source_database(big, BIG_ROOT))
    started = time.monotonic()
    big.delete_env(name)
    big.wait_gone(name, timeout=RELEASE_BOUND_S)
    released = time.monotonic() - started
    record.number("released after", f"{released:.1f} s")
    assert released < RELEASE_BOUND_S
    assert_nothing_left(big, name, uid)
    reasons = big.event_reasons(name)
    assert "Cancelled" in reasons and "Deleted" in reasons, reasons
    assert "DatabaseCloned" not in reasons and "Active" not in reasons, reasons
