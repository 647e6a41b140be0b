"""metav1.Condition lists, changed only when something changed (no status churn while idle)."""

from __future__ import annotations

import datetime as dt
from typing import Any

Condition = dict[str, Any]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[Condition], type_: str, status: bool, reason: str, message: str,
                  generation: int) -> list[Condition]:
    """A new list with `type_` set; lastTransitionTime moves only when the status flips."""
    wanted = "True" if status else "False"
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(cond)
            continue
        found = True
        transition = cond.get("lastTransitionTime") if cond.get("status") == wanted else now_rfc3339()
        out.append({"type": type_, "status": wanted, "reason": reason, "message": message,
                    "lastTransitionTime": transition or now_rfc3339(), "observedGeneration": generation})
    if not found:
        out.append({"type": type_, "status": wanted, "reason": reason, "message": message,
                    "lastTransitionTime": now_rfc3339(), "observedGeneration": generation})
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"
