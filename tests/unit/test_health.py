"""The tracked executor tells a wedged operator (saturated, no progress) from a busy one."""

from __future__ import annotations

import threading
import time

from envbranch.health import TrackedExecutor


def test_saturated_without_progress_is_stalled_and_recovers() -> None:
    executor = TrackedExecutor(max_workers=2)
    release = threading.Event()
    try:
        futures = [executor.submit(release.wait, 10) for _ in range(3)]
        deadline = time.monotonic() + 5
        while executor.snapshot()[:2] != (2, 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert executor.snapshot()[:2] == (2, 1)
        assert executor.stalled(bound=60) is None          # saturated, but only just
        why = executor.stalled(bound=0)
        assert why is not None and "2 of 2 threads busy and 1 queued" in why
        release.set()
        for future in futures:
            assert future.result(timeout=10) is True
        assert executor.snapshot()[:2] == (0, 0)
        assert executor.stalled(bound=0) is None            # idle is not wedged
    finally:
        release.set()
        executor.shutdown()


def test_busy_threads_with_room_left_are_not_stalled() -> None:
    executor = TrackedExecutor(max_workers=4)
    release = threading.Event()
    try:
        future = executor.submit(release.wait, 10)
        deadline = time.monotonic() + 5
        while executor.snapshot()[0] != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert executor.stalled(bound=0) is None
    finally:
        release.set()
        future.result(timeout=10)
        executor.shutdown()
