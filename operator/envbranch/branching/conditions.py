"""metav1.Condition lists (api.common.Condition), changed only when something changed (no status churn
while idle)."""

from __future__ import annotations

from envbranch.api.common import Condition, now_rfc3339

__all__ = ["Condition", "get_condition", "is_true", "now_rfc3339", "set_condition"]


def set_condition(conditions: list[Condition], type_: str, status: bool, reason: str, message: str,
                  generation: int) -> list[Condition]:
    """A new list with `type_` set; lastTransitionTime moves only when the status flips."""
    wanted = "True" if status else "False"
    old = get_condition(conditions, type_)
    moved = old is None or old.status != wanted or not old.last_transition_time
    new = Condition(type=type_, status=wanted, reason=reason, message=message, observed_generation=generation,
                    last_transition_time=now_rfc3339() if moved or old is None else old.last_transition_time)
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == "True"
