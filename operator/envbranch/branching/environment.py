"""The Environment's entry points, called by handlers.py: reconcile (create, resume, update; an
Active one may be refreshed, refresh.py), delete (the finalizer) and expire (ttl). The branch
itself is driver.py's, its steps steps/'s.

Every step is level-based: it looks at what exists before it creates, so an operator restarted at
any line converges on the same state. Each thing is recorded in status.inventory before it is
created; rollback and deletion remove the inventory in reverse order and verify it gone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from envbranch.api import common
from envbranch.api.environment import expiry
from envbranch.branching import database, driver, refresh, watch
from envbranch.branching.context import OperatorContext
from envbranch.branching.errors import Invalid, Waiting
from envbranch.branching.inventory import entries
from envbranch.branching.removal import remove_inventory
from envbranch.branching.run import Run
from envbranch.branching.steps import validate
from envbranch.kube import events, resources


def reconcile_environment(ctx: OperatorContext, body: dict[str, Any], retry: int) -> None:
    """Create, resume and update all land here; an Active, observed object is left alone."""
    run = Run(ctx, body)
    phase = run.status.phase
    observed = run.status.observed_generation == run.generation
    if phase == common.PHASE_ACTIVE:
        if not observed:
            # Only displayName can change on an Active environment (the rest is immutable).
            try:
                validate.check_display_name(run)
            except Invalid as bad:
                run.event(bad.reason, bad.message, warning=True)
                run.write(conditions=run.conditions_with((common.CONDITION_READY, True, bad.reason, bad.message)))
                return
            run.write(observed_generation=run.generation, expires_at=run.expires_at())
        if run.status.access is None:  # Active since before status.access existed
            run.write(access=run.spec.access or "Open")
        refresh.reconcile(run)
        return
    if phase == common.PHASE_FAILED:
        if run.status.inventory:
            driver.roll_back(run)
            return
        token = run.annotations.get(common.ANNOTATION_RETRY)
        if observed and (not token or token == run.status.last_retry):
            return
        run.write(last_retry=token)
        run.event("Retrying", "branching again (envbranch.io/retry or a spec change)")
    driver.branch(run, retry)


def delete_environment(ctx: OperatorContext, body: dict[str, Any]) -> None:
    """The finalizer: with Delete, remove what this environment created and wait until it is gone."""
    run = Run(ctx, body)
    stop_copy(run)
    if run.spec.effective_deletion_policy() == "Retain" and run.status.branched_at:
        # Kept databases and roles lose our tag, or the reaper would take them for orphans.
        for entry in entries(run.status):
            if entry.kind in ("Database", "Role") and entry.server:
                database.untag(ctx, run.project, entry.server, entry.kind.lower(), entry.name, run.uid)
        run.event("Retained", "deletionPolicy Retain: the database, role and namespace are kept")
        return
    # With Retain, an environment that never became Active has nothing worth keeping: its partial
    # work is removed like a rollback's.
    if run.status.phase != common.PHASE_DELETING:
        run.set_phase(common.PHASE_DELETING, "Deleting", "removing the database, role and namespace")
        run.event("Deleting", "removing the database, role and namespace")
    remove_inventory(run, "deletion")
    run.event("Deleted", "database, role and namespace removed")


def stop_copy(run: Run) -> None:
    """A copy still in the lane is cut off (its branch database dropped, tagged ours) and waited for:
    the removal must not race a copy that is still writing."""
    lane = run.ctx.copy_lane
    job = lane.cancel(run.uid)
    if job is None:
        return
    if not job.done:
        run.event("Cancelled", "the Environment is being deleted: the copy under way is stopped")
        for entry in entries(run.status):
            if entry.kind == "Database" and entry.server:
                watch.cut_off_copy(run, entry.server, entry.name)
        if not job.finished.wait(5):
            raise Waiting("StoppingCopy", "waiting for the copy under way to stop", 1)
    lane.forget(run.uid)


def seconds_left(body: dict[str, Any], ttl: str) -> float:
    """How long until the ttl of the Environment `body` has passed (negative once it has)."""
    return (expiry(body["metadata"]["creationTimestamp"], ttl) - dt.datetime.now(dt.UTC)).total_seconds()


def expire_environment(ctx: OperatorContext, body: dict[str, Any], ttl: str) -> None:
    """The ttl has passed: delete the Environment (its finalizer removes what it made)."""
    events.emit(ctx.kube, body, "Expired", f"ttl {ttl} has passed: deleting the environment")
    resources.delete(ctx.kube, resources.ENVIRONMENTS, body["metadata"]["namespace"], body["metadata"]["name"])
