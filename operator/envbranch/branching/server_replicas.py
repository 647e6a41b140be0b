"""A DatabaseServer's replicas in its status: `status.replicas`, `replicasUsable` and the condition
ReplicasReady, built from the probe's replica checks. Lags are whole seconds, and a lag that moved less
than LAG_STEP_SECONDS (or a tenth of itself) keeps its stored value, so an unchanged server causes no
status write per probe. With no replica listed there is neither condition nor field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.common import Condition
from envbranch.api.databaseserver import ReplicaStatus
from envbranch.branching.conditions import set_condition

LAG_STEP_SECONDS = 5
_LAG = "replayLagSeconds"
# The fields this module owns, all removed (merge patch null) when spec.replicas is emptied.
NO_REPLICAS: dict[str, Any] = {"replicas": None, "replicasUsable": None}


def replica_statuses(checks: Sequence[engine.ReplicaCheck]) -> list[ReplicaStatus]:
    return [ReplicaStatus(address=c.address, usable=c.usable, reason=c.reason, message=c.message,
                          replay_lag_seconds=round(c.replay_lag_seconds)
                          if c.usable and c.replay_lag_seconds is not None else None)
            for c in checks]


def replicas_condition(conditions: list[Condition], statuses: Sequence[ReplicaStatus],
                       generation: int) -> list[Condition]:
    """ReplicasReady: True when every listed replica is usable, else False naming the unusable ones."""
    unusable = [s for s in statuses if not s.usable]
    if not unusable:
        return set_condition(conditions, common.CONDITION_REPLICAS_READY, True, common.REASON_REPLICAS_USABLE,
                             f"all {len(statuses)} listed replica(s) are usable standbys", generation)
    named = "; ".join(f"{s.address}: {s.message}" for s in unusable)
    consequence = ("a Dump from this server reads from the usable ones" if len(unusable) < len(statuses)
                   else "a Dump from this server fails until one is usable (the primary is not used instead)")
    message = f"{len(unusable)} of {len(statuses)} listed replica(s) unusable ({named}); {consequence}"
    return set_condition(conditions, common.CONDITION_REPLICAS_READY, False, common.REASON_REPLICA_UNAVAILABLE,
                         message, generation)


def without_replicas_condition(conditions: list[Condition]) -> list[Condition]:
    return [c for c in conditions if c.type != common.CONDITION_REPLICAS_READY]


def replica_fields(statuses: Sequence[ReplicaStatus], stored: Any) -> dict[str, Any]:
    """status.replicas and replicasUsable as they are to be stored, lags steadied against `stored` (the
    current status.replicas)."""
    wanted = [s.model_dump(by_alias=True, exclude_none=True) for s in statuses]
    usable = sum(1 for s in statuses if s.usable)
    return {"replicas": steady_lags(stored, wanted), "replicasUsable": f"{usable}/{len(statuses)}"}


def steady_lags(stored: Any, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`wanted` with the stored lag of each replica (same address) whose lag moved less than
    LAG_STEP_SECONDS or a tenth of the stored lag: a lag that wobbles is not a status write."""
    before = {r.get("address"): r.get(_LAG) for r in stored or [] if isinstance(r, dict)}
    steadied = []
    for replica in wanted:
        old, new = before.get(replica["address"]), replica.get(_LAG)
        if isinstance(old, int) and new is not None and abs(new - old) < max(LAG_STEP_SECONDS, old // 10):
            replica = {**replica, _LAG: old}
        steadied.append(replica)
    return steadied
