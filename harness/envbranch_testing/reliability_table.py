"""The reliability suite's results table, docs/reliability.md: a pytest plugin (tests/conftest.py
registers it) so that it runs in the process that reports. Under pytest-xdist that is the
controller, which collects nothing and loads no conftest below tests/: it learns the collected ids
from the workers and each test's row from the reports, which carry it in their user_properties.

Every test in tests/reliability is described by `@pytest.mark.reliability(area, checked)` (or at run
time through the `record` fixture) and may add numbers; after a run of the whole directory the
table is written, so the committed file is always the output of a real run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from collections.abc import Generator
from pathlib import Path

import pytest

# Both relative to the rootdir (the repository's root in a run of the suite).
RELIABILITY_TESTS = Path("tests", "reliability")
REPORT = Path("docs", "reliability.md")
ROW_PROPERTY = "reliability_row"


@dataclasses.dataclass
class Row:
    """One line of the results table."""

    test: str
    area: str = ""
    checked: str = ""
    outcome: str = "not run"
    seconds: float = 0.0
    numbers: dict[str, str] = dataclasses.field(default_factory=dict)


class Recorder:
    """What a test adds to its row: a description decided at run time, and numbers."""

    def __init__(self, row: Row) -> None:
        self._row = row

    def describe(self, area: str, checked: str) -> None:
        self._row.area, self._row.checked = area, checked

    def number(self, name: str, value: object) -> None:
        self._row.numbers[name] = str(value)


def row_name(nodeid: str) -> str:
    """The test's name in its file, without the `@group` xdist's loadgroup appends to a nodeid."""
    name = nodeid.split("::", 1)[-1]
    return name.rsplit("@", 1)[0] if name.rfind("@") > name.rfind("]") else name


class Results:
    """The table: a row per reliability test collected, filled in from the reports as they come."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.started = time.monotonic()

    def expect(self, nodeid: str) -> None:
        self.rows.setdefault(nodeid, Row(row_name(nodeid)))

    def markdown(self) -> str:
        passed = sum(r.outcome == "pass" for r in self.rows.values())
        lines = [
            "# Reliability and security results",
            "",
            "Written by `make test-reliability` (harness/envbranch_testing/reliability_table.py) at the end of a "
            "run of the whole suite; do not edit by hand. Every row is a real fault (SIGKILL, a stopped server, a "
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


_ROW = pytest.StashKey[Row]()


def _mine(rootpath: Path, nodeid: str) -> bool:
    return (rootpath / nodeid.split("::", 1)[0]).resolve().parent == (rootpath / RELIABILITY_TESTS).resolve()


def _item_row(item: pytest.Item) -> Row:
    """The row this test writes to, in the process that runs it."""
    if _ROW not in item.stash:
        row = item.stash[_ROW] = Row(row_name(item.nodeid))
        if marker := item.get_closest_marker("reliability"):
            row.area, row.checked = marker.args
    return item.stash[_ROW]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(area, checked): the row of the reliability results table")
    if not hasattr(config, "workerinput"):  # an xdist worker only sends its reports
        config.pluginmanager.register(ResultsTable(config), "envbranch-reliability-table")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In the process that runs the test: its row, as it stands after this phase, onto the report."""
    report = yield
    if not _mine(item.config.rootpath, item.nodeid):
        return report
    row = _item_row(item)
    if report.when == "call":
        row.seconds = report.duration
        row.outcome = "pass" if report.passed else ("skipped" if report.skipped else "fail")
    elif report.failed:
        row.outcome = "fail"
    elif report.skipped and report.when == "setup":
        row.outcome = "skipped"
    report.user_properties.append((ROW_PROPERTY, dataclasses.asdict(row)))
    return report


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Recorder:
    """This test's row of the results table: `record.number("wall s", 12.3)`."""
    return Recorder(_item_row(request.node))


class ResultsTable:
    """The table in the reporting process: the rows of the tests collected, filled in from the reports;
    written to REPORT after a run of the whole of tests/reliability."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results = Results()

    def _expect(self, nodeids: list[str]) -> None:
        for nodeid in nodeids:
            if _mine(self.config.rootpath, nodeid):
                self.results.expect(nodeid)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self._expect([item.nodeid for item in items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, ids: list[str]) -> None:
        # Each worker collects the whole suite: the first to finish gives the order.
        self._expect(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = [value for name, value in report.user_properties if name == ROW_PROPERTY]
        if rows and isinstance(rows[-1], dict):
            self.results.rows[report.nodeid] = Row(**rows[-1])

    def _whole_directory_ran(self) -> bool:
        opts = self.config.option
        on_disk = {p.name for p in (self.config.rootpath / RELIABILITY_TESTS).glob("test_*.py")}
        collected = {Path(nodeid.split("::", 1)[0]).name for nodeid in self.results.rows}
        return (collected == on_disk and not opts.keyword and not opts.markexpr
                and not any("::" in str(a) for a in self.config.args))

    def pytest_sessionfinish(self) -> None:
        if all(r.outcome == "not run" for r in self.results.rows.values()):
            return
        if self._whole_directory_ran():
            report = self.config.rootpath / REPORT
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(self.results.markdown())

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        measured = [r for r in self.results.rows.values() if r.numbers]
        if measured:
            terminalreporter.section("reliability numbers")
            for r in measured:
                terminalreporter.write_line(f"{r.test}: " + ", ".join(f"{k}: {v}" for k, v in r.numbers.items()))
