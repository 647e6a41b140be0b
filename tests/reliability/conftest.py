"""The reliability suite's results table and the big source database several fault tests clone.

Every test here is described by `@pytest.mark.reliability(area, checked)` (or at run time through the
`record` fixture) and may add numbers; after a run of the whole directory the table is written to
docs/reliability.md, so the committed file is always the output of a real run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import BIG_ROOT, Recorder, Row, adopt_root, create_big_database
from kubernetes import client

from envbranch_testing.controlplane import REPO_ROOT
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.scenario import Project

HERE = Path(__file__).resolve().parent
REPORT = REPO_ROOT / "docs" / "reliability.md"


class Results:
    """One row per reliability test, filled in as the session runs."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.started = time.monotonic()

    def row(self, item: pytest.Item) -> Row:
        return self.rows.setdefault(item.nodeid, Row(item.nodeid.split("::", 1)[-1]))

    def markdown(self) -> str:
        passed = sum(r.outcome == "pass" for r in self.rows.values())
        lines = [
            "# Reliability and security results",
            "",
            "Written by `make test-reliability` (tests/reliability/conftest.py) at the end of a run of the "
            "whole suite; do not edit by hand. Every row is a real fault (SIGKILL, a stopped server, a "
            "restarted API server, a dropped database) or a real request refused by the API server or the "
            "operator.",
            "",
            f"- run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
            f"- result: {passed} of {len(self.rows)} passed in {time.monotonic() - self.started:.0f} s",
            "",
            "| test | fault or input class | what was checked | result | numbers |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows.values():
            numbers = ", ".join([f"{k}: {v}" for k, v in r.numbers.items()] + [f"test {r.seconds:.1f} s"])
            cells = [f"`{r.test}`", r.area, r.checked, "**FAIL**" if r.outcome == "fail" else r.outcome, numbers]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"


_RESULTS = pytest.StashKey[Results]()


def _mine(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().parent == HERE


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(area, checked): the row of the reliability results table")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    results = config.stash.setdefault(_RESULTS, Results())
    for item in filter(_mine, items):
        row = results.row(item)
        if marker := item.get_closest_marker("reliability"):
            row.area, row.checked = marker.args


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    results = item.config.stash.get(_RESULTS, None)
    if results is None or not _mine(item):
        return
    row = results.row(item)
    if report.when == "call":
        row.seconds = report.duration
        row.outcome = "pass" if report.passed else ("skipped" if report.skipped else "fail")
    elif report.failed:
        row.outcome = "fail"
    elif report.skipped and report.when == "setup":
        row.outcome = "skipped"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    results = session.config.stash.get(_RESULTS, None)
    if not results or all(r.outcome == "not run" for r in results.rows.values()):
        return
    opts = session.config.option
    on_disk = {p.name for p in HERE.glob("test_*.py")}
    collected = {Path(str(i.path)).name for i in session.items if _mine(i)}
    whole_suite = (collected == on_disk and not opts.keyword and not opts.markexpr
                   and not any("::" in str(a) for a in session.config.args))
    if whole_suite:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(results.markdown())


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Recorder:
    """This test's row of the results table: `record.number("wall s", 12.3)`."""
    results = request.config.stash.setdefault(_RESULTS, Results())
    return Recorder(results.row(request.node))


@pytest.fixture(scope="session")
def big(operator: OperatorProcess, k8s: client.ApiClient, postgres: Postgres) -> Project:
    """A project whose root `big` adopts a ~200 MB database: a Dump of it takes a few seconds, long
    enough to break things while it runs."""
    proj = Project(k8s, f"big-{uuid.uuid4().hex[:6]}", postgres)
    proj.create_namespace(proj.namespace)
    proj.create_server()
    proj.wait_server_ready()
    create_big_database(postgres, f"big_{proj.namespace.replace('-', '_')}")
    adopt_root(proj, BIG_ROOT, f"big_{proj.namespace.replace('-', '_')}")
    return proj



def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    results = terminalreporter.config.stash.get(_RESULTS, None)
    measured = [r for r in (results.rows.values() if results else []) if r.numbers]
    if measured:
        terminalreporter.section("reliability numbers")
        for r in measured:
            terminalreporter.write_line(f"{r.test}: " + ", ".join(f"{k}: {v}" for k, v in r.numbers.items()))


@pytest.fixture
def side(project: Project) -> Iterator[Project]:
    """A PostgreSQL server of its own (the session's is not disturbed) with a DatabaseServer `side` and
    a root `side-root` adopting a ~130 MB database on it."""
    with Postgres() as pg:
        proj = Project(project.api, project.namespace, pg, server="side")
        proj.create_server("side")
        proj.wait_server_ready("side")
        create_big_database(pg, "side_source", rows=40_000)
        adopt_root(proj, "side-root", "side_source", server="side")
        yield proj
        # Nothing of this project may keep the operator busy once its server is gone.
        for env in proj.custom.list_namespaced_custom_object("envbranch.io", "v1alpha1", proj.namespace,
                                                             "environments")["items"]:
            proj.delete_env(env["metadata"]["name"])
            proj.wait_gone(env["metadata"]["name"])
        proj.custom.delete_namespaced_custom_object("envbranch.io", "v1alpha1", proj.namespace, "databaseservers",
                                                    "side")
