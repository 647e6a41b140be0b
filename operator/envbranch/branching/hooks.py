"""The test switches (fault injection, pause points) and the step timer (metrics)."""

from __future__ import annotations

import time

from envbranch import metrics
from envbranch.api import common
from envbranch.branching.errors import StepFailed
from envbranch.branching.run import Run
from envbranch.kube import resources


def inject_fault(run: Run, step: str) -> None:
    """Test-only: fail at a named step when the operator runs with fault injection on."""
    if run.ctx.settings.fault_injection and run.annotations.get(common.ANNOTATION_INJECT_FAULT) == step:
        raise StepFailed(step, "InjectedFault", f"fault injected at step {step} (test switch)")


def pause_point(run: Run, step: str) -> None:
    """Test-only: hold at a named step until the pause annotation is removed, so a test can kill the
    operator at an exact step boundary."""
    if not run.ctx.settings.fault_injection or run.annotations.get(common.ANNOTATION_INJECT_PAUSE) != step:
        return
    run.write()  # the step's progress, so the test sees where it paused
    run.event("Paused", f"paused at step {step} (test switch)")
    while True:
        body = resources.get(run.ctx.kube, resources.ENVIRONMENTS, run.project, run.name)
        annotations = (body or {}).get("metadata", {}).get("annotations") or {}
        if annotations.get(common.ANNOTATION_INJECT_PAUSE) != step or run.cancelled:
            return
        time.sleep(0.2)


class StepClock:
    """How long each step and the whole branch took, into the Prometheus histograms."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step: tuple[str, float] | None = None

    def enter(self, step: str) -> None:
        self.finish_step()
        self.step = (step, time.monotonic())

    def finish_step(self) -> None:
        if self.step is not None:
            metrics.STEP_SECONDS.labels(self.step[0]).observe(time.monotonic() - self.step[1])
            self.step = None

    def observe_branch(self, run: Run, result: str) -> None:
        self.finish_step()
        strategy = run.status.database.strategy if run.status.database else None
        metrics.BRANCH_SECONDS.labels(strategy or "none", run.spec.mode or "Root", result).observe(
            time.monotonic() - self.started)
