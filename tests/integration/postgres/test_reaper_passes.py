"""The orphan reaper passes over each PostgreSQL server once per interval, however many
DatabaseServers name it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from envbranch_testing.operator import E2E_OPERATOR_ENV, OperatorProcess, scrape_metrics
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project

pytestmark = pytest.mark.needs_local_operator  # reads the operator's metrics port directly


def test_two_database_servers_on_one_server_are_reaped_once_per_interval(project: Project,
                                                                        operator: OperatorProcess) -> None:
    interval = float(E2E_OPERATOR_ENV["ENVBRANCH_REAPER_INTERVAL"])
    project.create_server("second")  # `main` and `second` name the same PostgreSQL
    project.wait_server_ready("second")
    label = f'server="{project.pg.host}:{project.pg.port}"'

    def passes() -> tuple[float, float]:
        found = scrape_metrics(operator.metrics_port)
        return (found.get(f'envbranch_reaper_passes_total{{result="ran",{label}}}', 0.0),
                found.get(f'envbranch_reaper_passes_total{{result="skipped",{label}}}', 0.0))

    def passes_when(cond: Callable[[tuple[float, float]], bool], what: str) -> tuple[float, float]:
        def check() -> tuple[float, float] | None:
            found = passes()
            return found if cond(found) else None
        return wait_until(check, timeout=5 * interval, interval=0.2, what=what)

    # A window from just after one pass to two passes later: every interval both DatabaseServers'
    # timers fire and one pass runs, so the other timer's firing is skipped; passes are at least 0.9
    # intervals apart (the 0.2 s scrape may see the first pass late).
    first = passes_when(lambda r: r[0] > 0, "a reaper pass")
    ran0, skipped0 = passes_when(lambda r: r[0] > first[0], "the next reaper pass")
    started = time.monotonic()
    ran, skipped = passes_when(lambda r: r[0] >= ran0 + 2, "two more reaper passes")
    elapsed = time.monotonic() - started
    assert ran - ran0 <= elapsed / (0.9 * interval) + 1, (ran - ran0, elapsed)
    assert skipped - skipped0 >= ran - ran0 - 1, ("each pass over the server should come with the other "
                                                  f"DatabaseServer's timer skipped: ran {ran - ran0}, "
                                                  f"skipped {skipped - skipped0}")
