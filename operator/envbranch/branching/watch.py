"""Waiting on the cluster. The deletion watch: Kopf runs the finalizer only after the reconcile
returns, so while the steps run a thread looks for the Environment being deleted and cuts the copy
under way off. And wait_for, which polls until something is really gone."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from envbranch.branching import database
from envbranch.branching.errors import Cancelled, Transient
from envbranch.branching.run import Run
from envbranch.branching.step import Plan
from envbranch.kube import resources

log = logging.getLogger(__name__)
DELETION_POLL_S = 1.0


@contextlib.contextmanager
def cancelled_on_deletion(run: Run, plan: Plan) -> Iterator[None]:
    """Once the Environment is deleted, the copy under way is cut off by dropping the branch database
    it writes into (tagged with our UID from its creation, so never anyone else's), and whatever the
    steps raise becomes Cancelled: the finalizer then removes what is left."""
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(run, plan, stop), daemon=True,
                               name=f"envbranch-cancel-{run.name}")
    watcher.start()
    try:
        yield
    except Exception as exc:
        if run.cancelled:
            raise Cancelled() from exc
        raise
    finally:
        stop.set()
        watcher.join()
    if run.cancelled:
        raise Cancelled()


def being_deleted(run: Run) -> bool:
    """True once this Environment is marked for deletion (or gone); an API hiccup says False."""
    try:
        body = resources.get(run.ctx.kube, resources.ENVIRONMENTS, run.project, run.name)
    except Exception as exc:  # look again on the next tick
        log.debug("deletion watch of %s/%s: %s", run.project, run.name, type(exc).__name__)
        return False
    meta = (body or {}).get("metadata") or {}
    return body is None or meta.get("uid") != run.uid or bool(meta.get("deletionTimestamp"))


def _watch(run: Run, plan: Plan, stop: threading.Event) -> None:
    while not stop.wait(DELETION_POLL_S):
        if not being_deleted(run):
            continue
        run.cancelled = True
        if not plan.adopt_database:
            cut_off_copy(run, plan.server_name, plan.database)
        return


def raise_if_deleted(run: Run) -> None:
    """A clone that finished between two ticks of the watcher is not reported as done when its
    Environment was deleted meanwhile: the finalizer removes it."""
    if run.cancelled or being_deleted(run):
        run.cancelled = True
        raise Cancelled()


def cut_off_copy(run: Run, server: str, name: str) -> None:
    """Drop the branch database a copy writes into, which ends the copy with an error."""
    with contextlib.suppress(Exception):  # not there yet, or not ours: nothing to cut off
        database.drop_database(run.ctx, run.project, server, name, run.uid)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll a real condition; a wait that runs out becomes a retry, not a failure."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise Transient("cleanup", "StillPresent", f"timed out waiting for {what}")
        time.sleep(0.5)
