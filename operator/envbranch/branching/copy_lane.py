"""The copy lane: long copies (Full mode by Dump) run on a few threads of their own.

A reconcile hands its copy to the lane and returns at once; it looks again a moment later and
picks the result up when the copy is done. Kopf's executor never waits on a copy, so deletions,
rollbacks, Template and System branches, probes and expiry keep moving however many copies run,
and `--copy-concurrency` bounds how many copies load the servers at once. The lane lives in the
process: after a restart the reconcile finds no job and starts the copy again (the partial branch
database is ours by its owner role and tag, so it is dropped first).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from envbranch.branching.errors import Cancelled

State = Literal["queued", "running", "done"]


@dataclass(eq=False)
class CopyJob:
    key: str                                 # the Environment's UID
    work: Callable[[], dict[str, Any]]
    state: State = "queued"
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def outcome(self) -> dict[str, Any]:
        """The copy's result, or the exception it ended with."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class CopyLane:
    """The operator's lane (its context holds it): `slots` copies at once (--copy-concurrency)."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._jobs: dict[str, CopyJob] = {}
        self._queue: queue.Queue[CopyJob] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    @property
    def slots(self) -> int:
        return max(1, self._slots)

    def submit(self, key: str, work: Callable[[], dict[str, Any]]) -> CopyJob:
        with self._lock:
            existing = self._jobs.get(key)
            if existing is not None:
                return existing
            job = CopyJob(key, work)
            self._jobs[key] = job
            self._start_workers()
        self._queue.put(job)
        return job

    def get(self, key: str) -> CopyJob | None:
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def cancel(self, key: str) -> CopyJob | None:
        """A queued job ends at once; a running one ends when its copy is cut off (the caller drops
        the database it writes into)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            if job.state == "queued":
                job.state = "done"
                job.error = Cancelled()
                job.finished.set()
            return job

    def stats(self) -> tuple[int, int]:
        """(running, queued) copies."""
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return states.count("running"), states.count("queued")

    def _start_workers(self) -> None:
        # Daemon threads: a copy must never hold the process up at shutdown (it restarts on resume).
        while len(self._workers) < self.slots:
            worker = threading.Thread(target=self._work, daemon=True, name=f"envbranch-copy-{len(self._workers)}")
            self._workers.append(worker)
            worker.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            with self._lock:
                if job.state != "queued":  # cancelled while it waited
                    continue
                job.state = "running"
            try:
                job.result = job.work()
            except BaseException as exc:  # handed to the reconcile that picks the job up
                job.error = exc
            finally:
                with self._lock:
                    job.state = "done"
                job.finished.set()
