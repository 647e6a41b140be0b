"""Liveness that means something: the executor Kopf runs sync handlers on, watched.

`/healthz` answering 200 while every executor thread is stuck lets a frozen operator live forever.
The executor counts what it runs and what waits; the operator is wedged when work is queued (or
every thread is busy) and nothing has started or finished for `--stall-timeout` seconds.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TrackedExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ThreadPoolExecutor that knows how busy it is (Kopf resizes it through `_max_workers`)."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="envbranch-handler")
        self._counts_lock = threading.Lock()
        self.running = 0
        self.queued = 0
        self.last_progress = time.monotonic()

    @property
    def workers(self) -> int:
        return int(self._max_workers)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        with self._counts_lock:
            self.queued += 1

        def tracked() -> T:
            with self._counts_lock:
                self.queued -= 1
                self.running += 1
                self.last_progress = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._counts_lock:
                    self.running -= 1
                    self.last_progress = time.monotonic()

        return super().submit(tracked)

    def snapshot(self) -> tuple[int, int, float]:
        """(running, queued, seconds since a handler last started or finished)."""
        with self._counts_lock:
            return self.running, self.queued, time.monotonic() - self.last_progress

    def stalled(self, bound: float) -> str | None:
        """Why the executor can make no progress, or None while it can."""
        running, queued, idle = self.snapshot()
        saturated = queued > 0 or running >= self.workers
        if saturated and idle > bound:
            return (f"no handler started or finished for {idle:.0f} s with {running} of {self.workers} "
                    f"threads busy and {queued} queued")
        return None
