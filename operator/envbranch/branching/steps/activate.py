"""Active: phase Active, Ready=True, branchedAt and expiresAt set."""

from __future__ import annotations

from typing import Any

from envbranch.api import common
from envbranch.api.environment import Progress, RefreshStatus
from envbranch.branching import refresh
from envbranch.branching.run import Run

NAME = "done"


def activate(run: Run) -> str:
    """Reports the environment Active; returns what it is (for the Event)."""
    what = f"branched from {run.spec.source} ({run.spec.mode})" if run.spec.source else "root environment"
    fields: dict[str, Any] = {"expires_at": run.expires_at()} if run.spec.ttl else {}
    asked = refresh.wanted(run)
    if asked and run.status.refresh is None:
        # A refresh token applied with the manifest asks for nothing: the copy is brand new.
        fields["refresh"] = RefreshStatus(token=asked[0], scheduled=asked[1], stage="Done")
    run.set_phase(common.PHASE_ACTIVE, "Active", what, branched_at=run.status.branched_at or common.now_rfc3339(),
                  progress=Progress(step=NAME, percent=100), observed_generation=run.generation, **fields)
    return what
