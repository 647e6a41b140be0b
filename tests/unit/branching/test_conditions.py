from __future__ import annotations

from envbranch.api.common import Condition
from envbranch.branching.conditions import set_condition


def test_unchanged_status_keeps_the_transition_time() -> None:
    first = set_condition([], "Ready", False, "Branching", "working", 1)
    first[0].last_transition_time = "2020-01-01T00:00:00Z"
    second = set_condition(first, "Ready", False, "StillBranching", "still", 2)
    assert second[0].last_transition_time == "2020-01-01T00:00:00Z"
    assert second[0].reason == "StillBranching" and second[0].observed_generation == 2


def test_flipped_status_moves_the_transition_time_and_keeps_others() -> None:
    conds = [Condition(type="Other", status="True", reason="X", message="", last_transition_time="t"),
             Condition(type="Ready", status="False", reason="R", message="",
                       last_transition_time="2020-01-01T00:00:00Z")]
    out = set_condition(conds, "Ready", True, "Active", "ok", 3)
    assert out[0] == conds[0]
    assert out[1].status == "True" and out[1].last_transition_time != "2020-01-01T00:00:00Z"


def test_same_input_gives_an_equal_list() -> None:
    conds = set_condition([], "Ready", True, "Active", "ok", 1)
    assert set_condition(conds, "Ready", True, "Active", "ok", 1) == conds
