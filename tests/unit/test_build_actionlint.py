"""hack/build-actionlint.sh: actionlint pinned by hack/actionlint/go.mod, built once however many runs
start at once, not at all once built. A stand-in `go` on PATH records each build instead of compiling."""

from __future__ import annotations

import os
import re
from pathlib import Path

from envbranch_testing.buildscripts import run_at_once, with_fake_go

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "build-actionlint.sh"
MODULE = REPO / "hack" / "actionlint"


def _version() -> str:
    match = re.search(r"(?m)^\s*(?:require\s+)?github\.com/rhysd/actionlint (v\S+)", (MODULE / "go.mod").read_text())
    assert match
    return match.group(1)


def test_the_module_pins_actionlint_apart_from_helm() -> None:
    assert re.fullmatch(r"v1\.\d+\.\d+", _version())
    assert '_ "github.com/rhysd/actionlint/cmd/actionlint"' in (MODULE / "tools.go").read_text()
    assert f"github.com/rhysd/actionlint {_version()} h1:" in (MODULE / "go.sum").read_text()
    # Its own module: helm's dependency versions (hack/tools) are never moved by actionlint's.
    assert "helm.sh" not in (MODULE / "go.mod").read_text()
    assert "actionlint" not in (REPO / "hack/tools/go.mod").read_text()


def test_make_lint_runs_actionlint_on_the_workflows() -> None:
    lint = re.search(r"(?ms)^lint:.*?(?=^\S)", (REPO / "Makefile").read_text())
    assert lint and "hack/build-actionlint.sh" in lint.group(0) and ".github/workflows/" in lint.group(0)


def test_concurrent_runs_build_once_and_later_runs_not_at_all(tmp_path: Path) -> None:
    run, calls = with_fake_go(SCRIPT, tmp_path, ("actionlint",))
    folders = run_at_once(run)
    expected = tmp_path / "cache" / f"actionlint-{_version()}"
    assert folders == {str(expected)}
    assert os.access(expected / "actionlint", os.X_OK)
    builds = calls.read_text().splitlines()
    assert len(builds) == 1, builds
    assert builds[0].startswith(f"0 {MODULE} build ")
    assert builds[0].endswith("github.com/rhysd/actionlint/cmd/actionlint")
    assert run() == str(expected)
    assert len(calls.read_text().splitlines()) == 1
