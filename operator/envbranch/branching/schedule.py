"""spec.refresh.schedule: when the next scheduled refresh is due, and asking for it when it is.

A scheduled refresh is asked for the way a person asks for one, through an annotation
(envbranch.io/refresh-scheduled=<the time it fired for>), so the reconcile has one way in and a
restarted operator sees what was asked. One run missed while the operator was down is caught up
at once; older ones are not repeated."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cronsim import CronSim, CronSimError

from envbranch.api import common
from envbranch.api.common import format_rfc3339, parse_rfc3339
from envbranch.branching.run import Run
from envbranch.kube import resources

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

IDLE_S = 10.0        # how often a waiting schedule looks again (spec.refresh is read live)


def next_fire(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first time after `after` that `schedule` (cron, UTC) names; ValueError when it is not valid."""
    try:
        return next(CronSim(schedule, after.astimezone(dt.UTC).replace(second=0, microsecond=0)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(f"spec.refresh.schedule {schedule!r} is not a valid cron expression: {exc}") from None


def base(run: Run) -> dt.datetime:
    """What the next run counts from: the time the schedule last fired for, else when the branch
    became Active, else its creation."""
    fired = run.annotations.get(common.ANNOTATION_REFRESH_SCHEDULED)
    if fired:
        try:
            return parse_rfc3339(fired)
        except ValueError:
            pass
    return parse_rfc3339(run.status.branched_at or run.body["metadata"]["creationTimestamp"])


def tick(ctx: OperatorContext, body: dict[str, Any], now: dt.datetime | None = None) -> float:
    """One look at an Environment's schedule: status.nextRefresh kept true, the refresh asked for when
    due. Returns how long to wait before the next look."""
    run = Run(ctx, body)
    schedule = run.spec.refresh.schedule if run.spec.refresh else None
    if not schedule or run.status.phase != common.PHASE_ACTIVE:
        return IDLE_S
    now = now or dt.datetime.now(dt.UTC)
    try:
        due = next_fire(schedule, base(run))
    except ValueError as bad:
        run.write(next_refresh=None, conditions=run.conditions_with(
            (common.CONDITION_REFRESHED, False, "InvalidSchedule", str(bad))))
        return IDLE_S
    if due > now:
        run.write(next_refresh=format_rfc3339(due))
        return min(IDLE_S, (due - now).total_seconds())
    # Missed runs collapse into this one: the next counts from the last time due before now.
    while (later := next_fire(schedule, due)) <= now:
        due = later
    resources.patch(ctx.kube, resources.ENVIRONMENTS, run.project, run.name, {"metadata": {"annotations": {
        common.ANNOTATION_REFRESH_SCHEDULED: format_rfc3339(due)}}})
    run.write(next_refresh=format_rfc3339(next_fire(schedule, due)))
    return IDLE_S
