"""The branch driver: validate, then the step table in order, then Active; any failure retries cannot
cure rolls back what the inventory lists, in reverse."""

from __future__ import annotations

from envbranch import metrics
from envbranch.api import common
from envbranch.api.environment import Progress
from envbranch.branching import errors, hooks, watch
from envbranch.branching.conditions import get_condition
from envbranch.branching.errors import Cancelled, Invalid, StepFailed, Transient, Waiting
from envbranch.branching.removal import remove_inventory
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.branching.steps import CONDITIONS, STEPS, activate, validate

MAX_TRANSIENT_RETRIES = 5


def branch(run: Run, retry: int) -> None:
    clock = hooks.StepClock()
    plan = planned(run, clock)
    if plan is None:
        return
    run.set_phase(common.PHASE_BRANCHING, "Branching", "branching", (
        common.CONDITION_SOURCE_READY, True, "SourceActive",
        f"source {run.spec.source} is Active" if run.spec.source else "root environment"),
        parent=run.spec.source, branch_mode=run.spec.mode, namespace=plan.namespace,
        access=run.spec.access or "Open")
    clock = hooks.StepClock()  # the branch's duration counts from here, validation excluded
    step = STEPS[0]
    try:
        with watch.cancelled_on_deletion(run, plan):
            for step in STEPS:
                enter(run, step, clock)
                step.make(run, plan)
    except Cancelled as exc:
        clock.finish_step()
        run.event(exc.reason, f"step {step.reported} stopped: {exc.message}", warning=True)
        return
    except Waiting:
        raise  # e.g. the DatabaseServer went away mid-branch: wait for it, roll nothing back
    except Transient as exc:
        if retry < MAX_TRANSIENT_RETRIES:
            run.event("Retrying", f"step {exc.step}: {exc.message}", warning=True)
            raise
        fail_and_roll_back(run, clock, exc.step, exc.reason, f"{exc.message} (gave up after {retry} retries)")
        return
    except StepFailed as exc:
        fail_and_roll_back(run, clock, exc.step, exc.reason, exc.message)
        return
    except Exception as exc:
        if errors.is_transient(exc) and retry < MAX_TRANSIENT_RETRIES:
            # Said like the Transient above (a sibling except clause would not see this one).
            run.event("Retrying", f"step {step.reported}: {errors.describe(exc)}", warning=True)
            raise Transient(step.reported, type(exc).__name__, errors.describe(exc)) from exc
        fail_and_roll_back(run, clock, step.reported, "Error", errors.describe(exc))
        return
    what = activate.activate(run)
    clock.observe_branch(run, "Active")
    run.event("Active", f"environment is Active: {what}")


def planned(run: Run, clock: hooks.StepClock) -> Plan | None:
    """The plan; None when validation settled the environment as Failed. Waiting is reported as
    Pending and raised on (retried later)."""
    try:
        return validate.plan(run)
    except Waiting as wait:
        run.set_phase(common.PHASE_PENDING, wait.reason, wait.message,
                      (common.CONDITION_SOURCE_READY, False, wait.reason, wait.message))
        raise
    except Invalid as bad:
        if run.status.inventory:  # e.g. the source replaced after a partial attempt
            fail_and_roll_back(run, clock, validate.NAME, bad.reason, bad.message)
            return None
        run.event(bad.reason, bad.message, warning=True)
        run.set_phase(common.PHASE_FAILED, bad.reason, bad.message, observed_generation=run.generation)
        return None


def enter(run: Run, step: Step, clock: hooks.StepClock) -> None:
    """A step's start: its timer, its progress (riding on its first write), the test switches."""
    if step.percent is None:
        return
    clock.enter(step.name)
    run.pending_progress = Progress(step=step.name, percent=step.percent)
    hooks.pause_point(run, step.name)
    if run.cancelled:
        raise Cancelled()
    hooks.inject_fault(run, step.name)


def fail_and_roll_back(run: Run, clock: hooks.StepClock, step: str, reason: str, message: str) -> None:
    run.event("StepFailed", f"step {step} failed: {message}; rolling back", warning=True)
    clock.observe_branch(run, "Failed")
    metrics.ROLLBACKS.labels(reason).inc()
    failed_cond = CONDITIONS.get(step)
    extra = [(failed_cond, False, reason, message)] if failed_cond else []
    # Failed first: a crash during the rollback resumes the rollback, never the branch.
    run.set_phase(common.PHASE_FAILED, reason, f"step {step} failed: {message}; rolling back", *extra,
                  settled=False, observed_generation=run.generation, progress=Progress(step=step, percent=100))
    roll_back(run)


def roll_back(run: Run) -> None:
    """Remove the inventory; a removal that fails is retried with backoff until it succeeds."""
    remove_inventory(run, "rollback")
    ready = get_condition(run.status.conditions, common.CONDITION_READY)
    reason = ready.reason if ready and ready.reason else "Failed"
    message = (ready.message if ready and ready.message else "failed").replace("; rolling back", "; rolled back")
    run.set_phase(common.PHASE_FAILED, reason, message)
    run.event("RolledBack", f"everything created for this environment was removed ({reason})", warning=True)
