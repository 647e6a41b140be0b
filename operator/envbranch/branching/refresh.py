"""Refresh in place: an Active branch's database re-cloned from its source, keeping its identity.

The new copy is made beside the current database (`<name>___next`, tagged with the environment's UID
and in the inventory) by the same clone a branch uses; once it is complete (stage Copied, its OID
recorded) and the grace period has passed, the current database's sessions are ended and both renames
happen in one transaction (`<name>` -> `<name>___prev`, `<name>___next` -> `<name>`); then the old one is
dropped. Role, password, Secret, namespace and children are untouched.

Every pass decides what to do from what exists (`next_action`), so an operator restarted at any line
finishes or undoes the swap: the environment's name always holds one database, and nothing is left
beside it. A copy that fails drops its partial database and leaves the old one serving (stage Failed,
condition Refreshed=False with the reason).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Literal

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.common import format_rfc3339, now_rfc3339, parse_rfc3339
from envbranch.api.environment import DatabaseStatus, LastRefresh, Progress, RefreshStatus
from envbranch.branching import database, errors, hooks
from envbranch.branching.errors import Invalid, StepFailed, Transient, Waiting
from envbranch.branching.inventory import Entry, entries
from envbranch.branching.run import Run
from envbranch.branching.step import Plan
from envbranch.branching.steps import clone, validate

NAME = "refresh"
MAX_COPY_ATTEMPTS = 5
Action = Literal["copy", "recopy", "swap", "drop-previous", "finish", "promote", "restore", "lost"]


def recorded(value: str | None, limit: int = 72) -> str | None:
    """An annotation value as status records it: a value too long for status by its digest."""
    if not value or len(value) <= limit:
        return value or None
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def wanted(run: Run) -> tuple[str | None, str | None] | None:
    """The (annotation token, scheduled time) that asks for a refresh not yet acted on, or None."""
    token = recorded(run.annotations.get(common.ANNOTATION_REFRESH))
    scheduled = recorded(run.annotations.get(common.ANNOTATION_REFRESH_SCHEDULED))
    state = run.status.refresh
    acted = (state.token, state.scheduled) if state else (None, None)
    if token in (None, acted[0]) and scheduled in (None, acted[1]):
        return None
    return token, scheduled


def next_action(state: RefreshStatus, current: str, found: dict[str, engine.refresh.Found]) -> Action:
    """What a refresh under way does next, from its recorded stage and the databases that exist now."""
    assert state.database and state.previous
    cur, fresh, prev = found.get(current), found.get(state.database), found.get(state.previous)
    complete = state.stage == "Copied" and state.database_oid is not None
    if cur is None:
        if fresh is not None and complete and fresh.oid == state.database_oid:
            return "promote"
        return "restore" if prev is not None else "lost"
    if complete and cur.oid == state.database_oid:  # swapped
        return "drop-previous" if prev is not None else "finish"
    if prev is not None:
        return "drop-previous"
    if state.stage == "Copying":
        return "copy"
    return "swap" if fresh is not None and fresh.oid == state.database_oid else "recopy"


def reconcile(run: Run) -> None:
    """An Active environment: go on with the refresh under way, or start one that is asked for."""
    state = run.status.refresh
    if state is not None and state.stage == "Failed" and _leftover(run, state):
        _clean_up(run, state)
    if state is None or state.stage in ("Done", "Failed"):
        trigger = wanted(run)
        if trigger is None:
            return
        state = _begin(run, trigger)
        if state is None:
            return
    try:
        plan = validate.plan(run)
    except Waiting as wait:  # e.g. the server stopped: said where the refresh is reported
        run.write(conditions=run.conditions_with((common.CONDITION_REFRESHED, False, wait.reason, wait.message)))
        raise
    except Invalid as bad:
        _fail(run, bad.reason, bad.message)
        return
    _advance(run, plan)


def _begin(run: Run, trigger: tuple[str | None, str | None]) -> RefreshStatus | None:
    token, scheduled = trigger
    current = run.status.database.name if run.status.database else None
    if not run.spec.source or not current or not run.status.database or not run.status.database.server:
        state = RefreshStatus(token=token, scheduled=scheduled, stage="Failed")
        run.write(refresh=state, conditions=run.conditions_with((
            common.CONDITION_REFRESHED, False, "NoSource", "only a branch (spec.source) can be refreshed")))
        return None
    before = run.status.refresh
    by_schedule = scheduled is not None and scheduled != (before.scheduled if before else None)
    state = RefreshStatus(token=token, scheduled=scheduled, stage="Copying", started_at=now_rfc3339(),
                          trigger=f"scheduled {scheduled}" if by_schedule else token,
                          database=engine.refresh.beside(current, engine.refresh.FRESH_SUFFIX),
                          previous=engine.refresh.beside(current, engine.refresh.PREVIOUS_SUFFIX))
    why = f"spec.refresh.schedule ({scheduled})" if by_schedule else f"{common.ANNOTATION_REFRESH}={token}"
    run.record(Entry("Database", state.database or "", server=run.status.database.server))
    run.write(refresh=state, conditions=run.conditions_with((
        common.CONDITION_REFRESHED, False, "Refreshing", f"copying {run.spec.source} into {state.database}")))
    run.event("Refreshing", f"refresh asked for by {why}: copying the source into {state.database}")
    return state


def _advance(run: Run, plan: Plan) -> None:
    """Step through next_action until the refresh is done (or has to wait for its copy or grace)."""
    for _ in range(8):
        state = run.status.refresh
        assert state is not None and state.database and state.previous
        action: Action | None = None
        try:
            found = database.find_refresh(run.ctx, run.project, plan.server_name,
                                          (plan.database, state.database, state.previous), run.uid)
            action = next_action(state, plan.database, found)
            if _act(run, plan, state, action):
                return
        except (Waiting, Transient):
            raise
        except Exception as exc:
            if action not in ("copy", "swap", "recopy", "lost"):
                # Looking, or the swap is done (or mended): that must finish, however long it takes.
                raise Transient(NAME, type(exc).__name__, errors.describe(exc)) from exc
            if isinstance(exc, StepFailed):
                _fail(run, exc.reason, exc.message)
            else:
                _failed_attempt(run, state, exc)
            return
    raise Transient(NAME, "RefreshUnsettled", "the refresh did not settle in one pass; trying again")


def _act(run: Run, plan: Plan, state: RefreshStatus, action: Action) -> bool:
    """Do one action; True when the refresh is over (done), False to look again."""
    assert state.database and state.previous
    if action == "copy":
        _copy(run, plan, state)
    elif action == "recopy":
        run.write(refresh=state.model_copy(update={"stage": "Copying", "database_oid": None, "swap_at": None}))
    elif action == "swap":
        _swap(run, plan, state)
    elif action == "drop-previous":
        database.drop_database(run.ctx, run.project, plan.server_name, state.previous, run.uid)
    elif action == "promote":
        database.rename(run.ctx, run.project, plan.server_name, state.database, plan.database, run.uid)
    elif action == "restore":
        database.rename(run.ctx, run.project, plan.server_name, state.previous, plan.database, run.uid)
    elif action == "lost":
        raise StepFailed(NAME, "DatabaseMissing", f"database {plan.database} is gone and no copy of it is left")
    else:
        _finish(run, plan, state)
        return True
    return False


def _copy(run: Run, plan: Plan, state: RefreshStatus) -> None:
    assert state.database and run.spec.mode
    fresh = dataclasses.replace(plan, database=state.database)
    result = clone.clone(run, fresh, condition=common.CONDITION_REFRESHED, progress=(NAME, 0, 90))
    if plan.role is not None:
        database.hand_over(run.ctx, run.project, plan.server_name, state.database, plan.role, sealed=run.spec.sealed)
    found = database.find_refresh(run.ctx, run.project, plan.server_name, (state.database,), run.uid)
    if state.database not in found:
        raise Transient(NAME, "CopyVanished", f"the new copy {state.database} is gone; copying again")
    run.write(refresh=state.model_copy(update={
        "stage": "Copied", "database_oid": found[state.database].oid, "strategy": result["strategy"],
        "bytes": result["bytes"]}))


def _swap(run: Run, plan: Plan, state: RefreshStatus) -> None:
    """After the grace period: end the current database's sessions and swap the names."""
    assert state.database and state.previous
    now = dt.datetime.now(dt.UTC)
    if state.swap_at is None:
        swap_at = now + dt.timedelta(seconds=run.ctx.settings.refresh_grace)
        run.write(refresh=state.model_copy(update={"swap_at": format_rfc3339(swap_at)}))
        run.event("RefreshSwapping", f"the new copy is ready: sessions of {plan.database} end at "
                  f"{format_rfc3339(swap_at)}, then it is replaced")
    else:
        swap_at = parse_rfc3339(state.swap_at)
    if swap_at > now:
        raise Waiting("RefreshGrace", f"ending the sessions of {plan.database} at {format_rfc3339(swap_at)}",
                      (swap_at - now).total_seconds())
    run.record(Entry("Database", state.previous, server=plan.server_name))
    hooks.pause_point(run, "refresh-swap")
    cutoff = database.swap(run.ctx, run.project, plan.server_name, plan.database, state.database, state.previous,
                           run.uid)
    run.write(refresh=state.model_copy(update={"cutoff_seconds": round(cutoff, 3)}))
    hooks.pause_point(run, "refresh-swapped")


def _finish(run: Run, plan: Plan, state: RefreshStatus) -> None:
    database.allow_connections(run.ctx, run.project, plan.server_name, plan.database)
    started = parse_rfc3339(state.started_at) if state.started_at else dt.datetime.now(dt.UTC)
    seconds = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3)
    last = LastRefresh(time=now_rfc3339(), token=state.trigger or "", strategy=state.strategy or "",
                       bytes=state.bytes or 0, seconds=seconds, cutoff_seconds=state.cutoff_seconds)
    current = run.status.database or DatabaseStatus(server=plan.server_name, name=plan.database)
    keep = [e.model() for e in entries(run.status) if not _beside(e, state)]
    run.write(refresh=state.model_copy(update={"stage": "Done"}), last_refresh=last, inventory=keep,
              database=current.model_copy(update={"strategy": state.strategy, "bytes": state.bytes}),
              progress=Progress(step=NAME, percent=100), conditions=run.conditions_with((
                  common.CONDITION_REFRESHED, True, "Refreshed",
                  f"{plan.database} re-cloned from {run.spec.source} ({state.strategy}, {state.bytes} bytes)")))
    run.event("Refreshed", f"database {plan.database} replaced by a new copy of {run.spec.source}: "
              f"{state.strategy}, {state.bytes} bytes, {seconds}s; clients cut off {state.cutoff_seconds}s")


def _beside(entry: Entry, state: RefreshStatus) -> bool:
    return entry.kind == "Database" and entry.name in (state.database, state.previous)


def _failed_attempt(run: Run, state: RefreshStatus, exc: Exception) -> None:
    """A copy that failed: retried (the old database serves meanwhile) while that may help."""
    attempts = (state.attempts or 0) + 1
    if errors.is_transient(exc) and attempts < MAX_COPY_ATTEMPTS:
        run.write(refresh=state.model_copy(update={"attempts": attempts}))
        run.event("Retrying", f"refresh: {errors.describe(exc)}", warning=True)
        raise Transient(NAME, type(exc).__name__, errors.describe(exc)) from exc
    _fail(run, "CopyFailed" if state.stage == "Copying" else "SwapFailed", errors.describe(exc))


def _fail(run: Run, reason: str, message: str) -> None:
    """The old database keeps serving; the new copy (if any) is dropped; Refreshed=False says why."""
    state = run.status.refresh
    assert state is not None
    failed = state.model_copy(update={"stage": "Failed"})
    run.write(refresh=failed, conditions=run.conditions_with((
        common.CONDITION_REFRESHED, False, reason, f"refresh failed, the database was not replaced: {message}")))
    run.event("RefreshFailed", f"refresh failed, the database was not replaced: {message}", warning=True)
    _clean_up(run, failed)


def _leftover(run: Run, state: RefreshStatus) -> bool:
    return any(_beside(e, state) for e in entries(run.status))


def _clean_up(run: Run, state: RefreshStatus) -> None:
    """A failed refresh's copy dropped and forgotten; retried with backoff until it is."""
    run.ctx.copy_lane.forget(run.uid)
    try:
        for entry in [e for e in entries(run.status) if _beside(e, state)]:
            assert entry.server
            database.drop_database(run.ctx, run.project, entry.server, entry.name, run.uid)
        if run.status.database and run.status.database.server and run.status.database.name:
            database.allow_connections(run.ctx, run.project, run.status.database.server, run.status.database.name)
    except Exception as exc:
        raise Transient(NAME, "CleanupIncomplete", f"refresh cleanup: {errors.describe(exc)}") from exc
    run.write(inventory=[e.model() for e in entries(run.status) if not _beside(e, state)])
