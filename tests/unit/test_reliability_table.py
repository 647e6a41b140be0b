"""docs/reliability.md is written from the reports, so a run on pytest-xdist workers (the controller
collects nothing and loads no conftest below tests/) writes the same table as a run in one process:
a small suite with the plugin, run both ways in a folder of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = {
    "tests/reliability/test_first.py": '''
import pytest

@pytest.mark.reliability("fault a", "it recovered")
def test_passes(record):
    record.number("recovered after", "1.5 s")

def test_described_at_run_time(record):
    record.describe("bad input b", "refused")

@pytest.mark.reliability("fault c", "never")
@pytest.mark.xdist_group("together")  # loadgroup appends "@together" to its nodeid
def test_fails():
    assert False
''',
    "tests/reliability/test_second.py": '''
import pytest

@pytest.mark.reliability("fault d", "skipped here")
def test_skipped():
    pytest.skip("not on this machine")

@pytest.mark.reliability("fault e", "fixture broke")
def test_setup_fails(broken):
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup")
''',
    "tests/other/test_elsewhere.py": "def test_not_a_row(record):\n    record.number('x', 1)\n",
}


def _suite(root: Path) -> Path:
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    for name, text in SUITE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "docs" / "reliability.md"


def _pytest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "envbranch_testing.reliability_table",
                           "-p", "no:cacheprovider", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def _rows(table: str) -> list[str]:
    # The rows without the seconds each test took.
    return [re.sub(r"test \d+\.\d s", "test N s", line) for line in table.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadgroup"]], ids=["one-process", "xdist"])
def test_the_table_lists_every_reliability_test_with_its_outcome(tmp_path: Path, workers: list[str]) -> None:
    report = _suite(tmp_path)
    run = _pytest(tmp_path, *workers)
    assert run.returncode == 1, run.stdout + run.stderr
    assert ("created: 2/2 workers" in run.stdout) == bool(workers)
    assert "recovered after: 1.5 s" in run.stdout  # the terminal summary
    table = report.read_text()
    assert "- result: 2 of 5 passed in" in table
    assert _rows(table) == [
        "| `test_passes` | fault a | it recovered | pass | recovered after: 1.5 s, test N s |",
        "| `test_described_at_run_time` | bad input b | refused | pass | test N s |",
        "| `test_fails` | fault c | never | **FAIL** | test N s |",
        "| `test_skipped` | fault d | skipped here | skipped | test N s |",
        "| `test_setup_fails` | fault e | fixture broke | **FAIL** | test N s |",
    ]


# Each pytest run here costs seconds (three processes with xdist): one partial run on workers.
@pytest.mark.parametrize("selection", [["-n", "2", "-k", "passes"], ["tests/reliability/test_first.py"],
                                       ["tests/reliability/test_second.py::test_skipped"]])
def test_a_partial_run_leaves_the_table_alone(tmp_path: Path, selection: list[str]) -> None:
    report = _suite(tmp_path)
    run = _pytest(tmp_path, *selection)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert re.search(r"\b[1-9]\d* (passed|skipped) in ", run.stdout), run.stdout
    assert not report.exists()
