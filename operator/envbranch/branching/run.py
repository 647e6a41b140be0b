"""One pass of the Environment reconcile over a snapshot of the object: who it is, what it asks for,
and its typed status, written to the API server only where something changed."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.common import format_rfc3339
from envbranch.api.environment import EnvironmentSpec, EnvironmentStatus, Progress, expiry
from envbranch.branching.conditions import Condition, set_condition
from envbranch.branching.inventory import Entry, entries, with_entry
from envbranch.kube import events, resources

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

ConditionUpdate = tuple[str, bool, str, str]   # type, status, reason, message
_FIELDS = EnvironmentStatus.model_fields


def wire(value: Any) -> Any:
    """A status field as it goes into a JSON merge patch: by alias, unset nested fields left out (a
    top-level None stays: it removes the field)."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [wire(v) for v in value]
    return copy.deepcopy(value)


class Run:
    """Writes go to .status only, as a merge patch of the fields that changed. `ctx` is the operator's
    state (settings, API client, caches, copy lane) the steps reach through the run."""

    def __init__(self, ctx: OperatorContext, body: dict[str, Any]) -> None:
        self.ctx = ctx
        self.body = body
        meta = body["metadata"]
        self.project: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.generation: int = int(meta.get("generation") or 1)
        self.annotations: dict[str, str] = dict(meta.get("annotations") or {})
        self.spec = EnvironmentSpec.model_validate(body.get("spec") or {})
        self.status = EnvironmentStatus.model_validate(body.get("status") or {})
        self.pending_progress: Progress | None = None    # rides along with the next write
        self.cancelled = False                           # set by the deletion watch
        self.server: engine.Server | None = None         # the DatabaseServer's connection, once resolved

    # -- status ----------------------------------------------------------------------------------
    def write(self, **changes: Any) -> None:
        """Patch the fields that differ; nothing at all when nothing changed (no churn). Fields are
        EnvironmentStatus's (snake_case); a name it does not have is an error, not a silent drop."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise TypeError(f"EnvironmentStatus has no field {', '.join(unknown)}")
        if self.pending_progress is not None:
            changes.setdefault("progress", self.pending_progress)
            self.pending_progress = None
        wanted = EnvironmentStatus.model_validate({**dict(self.status), **changes})
        changed = [k for k in changes if getattr(wanted, k) != getattr(self.status, k)]
        if not changed:
            return
        self.status = wanted
        patch = {_FIELDS[k].alias or k: wire(getattr(wanted, k)) for k in changed}
        resources.patch_status(self.ctx.kube, resources.ENVIRONMENTS, self.project, self.name, patch)

    def conditions_with(self, *updates: ConditionUpdate) -> list[Condition]:
        conds = list(self.status.conditions or [])
        for type_, ok, reason, message in updates:
            conds = set_condition(conds, type_, ok, reason, message, self.generation)
        return conds

    def set_phase(self, phase: str, reason: str, message: str, *extra: ConditionUpdate,
                  settled: bool = True, **fields: Any) -> None:
        """Phase plus the kstatus trio: Ready, Reconciling (work under way), Stalled (failed, settled)."""
        ready = phase == common.PHASE_ACTIVE
        busy = not settled or phase in (common.PHASE_PENDING, common.PHASE_BRANCHING, common.PHASE_DELETING)
        conds = self.conditions_with(
            *extra,
            (common.CONDITION_READY, ready, reason, message),
            (common.CONDITION_RECONCILING, busy, reason, message),
            (common.CONDITION_STALLED, phase == common.PHASE_FAILED and settled, reason, message),
        )
        self.write(phase=phase, conditions=conds, **fields)

    def progress(self, step: str, percent: int) -> None:
        self.write(progress=Progress(step=step, percent=percent))

    def record(self, entry: Entry) -> None:
        """Into the inventory before the thing is created."""
        inventory = with_entry(self.status, entry)
        if inventory is not None:
            self.write(inventory=inventory)

    def named(self, kind: str, server: str) -> str | None:
        """The name already recorded for this environment's database or role: names chosen under an
        earlier naming scheme stay what they are."""
        return next((e.name for e in entries(self.status) if e.kind == kind and e.server == server), None)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        events.emit(self.ctx.kube, self.body, reason, message, warning=warning)

    # -- ownership -------------------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        """On everything this environment writes into a namespace: its name, and its UID to match by."""
        return {common.LABEL_ENVIRONMENT: self.name, common.LABEL_UID: self.uid}

    def owns(self, obj: dict[str, Any] | None) -> bool:
        """A ConfigMap or Secret is ours by UID label. Objects written before UIDs were labelled are
        matched by name, but only in a namespace this environment made itself (never an adopted one)."""
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if common.LABEL_UID in labels:
            return bool(labels[common.LABEL_UID] == self.uid)
        return obj is not None and not self.spec.namespace and labels.get(common.LABEL_ENVIRONMENT) == self.name

    def expires_at(self) -> str | None:
        if not self.spec.ttl:
            return None
        return format_rfc3339(expiry(self.body["metadata"]["creationTimestamp"], self.spec.ttl))
