"""A branch's database cloned from its source: Template copies and schema-only dumps inline, a Full
Dump in the copy lane (copy_lane.py), picked up by a later reconcile when done."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.environment import Strategy
from envbranch.branching import database
from envbranch.branching.errors import Waiting
from envbranch.branching.run import Run
from envbranch.branching.step import Plan

COPY_POLL_S = 2.0
COPY_INLINE_S = 1.0


def clone(run: Run, plan: Plan, condition: str = common.CONDITION_DATABASE_READY,
          progress: tuple[str, int, int] = ("database", 20, 80)) -> dict[str, Any]:
    """The clone of the source into `plan.database`: its result (strategy, bytes, seconds); Waiting
    while the lane still has it, said in `condition`. Progress goes to `progress` (step, from, to).
    A refresh's new copy is made here too, so whatever a branch's copy does (masking), a refresh does
    again."""
    lane = run.ctx.copy_lane
    job = lane.get(run.uid)
    masked = plan.masking is not None and plan.masking.engine is not None
    if job is None:
        assert plan.source_server and plan.source_database and run.spec.mode
        # Before every start of the copy, this branch's own partial copy (dropped first) not counted.
        database.require_storage(run.ctx, run.project, server=plan.server_name, source_server=plan.source_server,
                                 source_database=plan.source_database, mode=run.spec.mode, replacing=plan.database)
        copy = _copier(run, plan, progress)
        try:
            # A schema-only Dump is short: only a Full one goes to the lane.
            strategy: Strategy = run.spec.database.strategy if run.spec.database else "Auto"
            # Masking happens in the Dump's read: a masked copy of an unmasked source is a Dump.
            return copy("Dump" if masked else strategy, run.spec.mode == "System")
        except engine.DumpNeeded:
            job = lane.submit(run.uid, lambda: copy("Dump", True))
        # A small copy is done within a moment: waiting that long here spares it a retry's delay.
        job.finished.wait(COPY_INLINE_S)
    if not job.done:
        if job.state == "queued":
            reason = "WaitingForCopySlot"
            message = (f"waiting for a copy slot: the operator runs {lane.slots} long copies at "
                       "once (--copy-concurrency)")
        else:
            reason, message = "Copying", f"copying {plan.source_database} into {plan.database} (Dump)"
        run.pending_progress = None  # the copy reports its own progress
        run.write(conditions=run.conditions_with((condition, False, reason, message)))
        raise Waiting(reason, message, COPY_POLL_S)
    lane.forget(run.uid)
    return job.outcome()


def _copier(run: Run, plan: Plan, progress: tuple[str, int, int]) -> Callable[[Strategy, bool], dict[str, Any]]:
    """copy(strategy, dump) -> result, reporting progress at most once a second (progress must not
    flood the API server)."""
    assert plan.source_server and plan.source_database and run.spec.mode
    source_server, source_database, mode = plan.source_server, plan.source_database, run.spec.mode
    masking = plan.masking.engine if plan.masking else None
    last = [time.monotonic()]
    step_name, low, high = progress

    def report(step: str, percent: int) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            run.progress(step_name, low + percent * (high - low) // 100)

    limits = run.spec.database.dump if run.spec.database else None
    # A sealed source has no sessions but the operator's own short ones: Auto waits for them to end
    # and copies by Template, instead of falling back to a Dump of the whole database.
    sealed_source = ((plan.parent or {}).get("spec") or {}).get("access") == "Sealed"

    def copy(strategy: Strategy, dump: bool) -> dict[str, Any]:
        return database.clone(run.ctx, run.project, source_server=source_server, source_database=source_database,
                              server=plan.server_name, database=plan.database, mode=mode, strategy=strategy,
                              uid=run.uid, progress=report, owner=plan.role, dump=dump, masking=masking,
                              limits=limits, busy_source_waits=sealed_source, flush=run.spec.access == "Sealed")

    return copy
