"""What a release ships, built and used here as a user would: `make dist` (wheel and sdist, twine
check), the wheel alone in a fresh virtualenv (the CLI and the operator with runtime dependencies
only, from the package index pinned by constraints.txt), and the krew archive run by kubectl as
the plugin `kubectl envbranch`. Needs the package index (pip's cache makes later runs quick)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbranch_testing.controlplane import find_binary

REPO = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
CONSTRAINTS = REPO / "constraints.txt"
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


def _run(*args: str | Path, timeout: float = 300, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False,
                         cwd=cwd, env=env)
    assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`make dist` into a folder of its own: the folder and make's output. (-o: the virtualenv these
    tests run in is never rebuilt under them; make test made it first.)"""
    out = tmp_path_factory.mktemp("dist")
    made = _run("make", "--no-print-directory", "-C", REPO, "-o", ".venv/.installed", "dist", f"DIST={out}")
    return out, made.stdout + made.stderr


def _wheel(folder: Path) -> Path:
    [wheel] = folder.glob("envbranch-*-py3-none-any.whl")
    return wheel


def test_make_dist_builds_a_wheel_and_an_sdist_that_pass_twine_check(dist: tuple[Path, str]) -> None:
    folder, output = dist
    assert sorted(p.name for p in folder.iterdir()) == [f"envbranch-{VERSION}-py3-none-any.whl",
                                                        f"envbranch-{VERSION}.tar.gz"]
    assert output.count("PASSED") == 2 and "twine check --strict" in output, output
    # The isolated build used the pinned setuptools, not whatever the index had that day.
    pinned = next(line for line in CONSTRAINTS.read_text().split() if line.startswith("setuptools=="))
    assert pinned in output


def test_the_wheel_alone_gives_the_cli_and_the_operator_with_runtime_dependencies_only(
        dist: tuple[Path, str], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"

    def installed() -> dict[str, str]:
        return {canonicalize_name(d["name"]): d["version"]
                for d in json.loads(_run(python, *PIP, "list", "--format", "json").stdout)}

    seeded = installed()  # what venv itself put there (pip; setuptools on Python 3.11)
    _run(python, *PIP, "install", "--quiet", "-c", CONSTRAINTS, _wheel(dist[0]), cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for command in ("envbranch", "kubectl-envbranch"):
        out = _run(venv / "bin" / command, "--help", cwd=tmp_path, env=env, timeout=60)
        assert f"Usage: {command} " in out.stdout and "branch" in out.stdout, out.stdout

    added = {n: v for n, v in installed().items() if n not in seeded}
    assert added.pop("envbranch") == VERSION
    dev = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["dev"]}
    assert not dev & set(added), f"development tools installed with the wheel: {sorted(dev & set(added))}"
    runtime = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert runtime <= set(added)
    pins = {canonicalize_name(n): v for n, v in (line.split("==") for line in CONSTRAINTS.read_text().split())}
    unpinned = {n: v for n, v in added.items() if pins.get(n) != v}
    assert not unpinned, f"installed but not as constraints.txt pins them: {unpinned}"

    # Every module of the operator and the CLI imports with those; the test harness is not in the wheel.
    shipped = zipfile.ZipFile(_wheel(dist[0])).namelist()
    assert not [n for n in shipped if "testing" in n.split("/")[0:2] or n.startswith("envbranch_testing")], shipped
    code = """import importlib, pkgutil, envbranch
names = [m.name for m in pkgutil.walk_packages(envbranch.__path__, "envbranch.")
         if m.name != "envbranch.__main__"]
for name in names:
    importlib.import_module(name)
print(envbranch.__version__, len(names), "envbranch.handlers" in names)"""
    version, count, handlers = _run(python, "-c", code, cwd=tmp_path, env=env).stdout.split()
    assert version == VERSION and int(count) > 30 and handlers == "True"


def test_the_krew_archive_runs_as_the_kubectl_plugin(dist: tuple[Path, str], tmp_path: Path) -> None:
    folder = tmp_path / "krew"
    _run("bash", REPO / "hack/krew-archive.sh", dist[0], folder)
    archive = folder / f"kubectl-envbranch-v{VERSION}.tar.gz"
    manifest = yaml.safe_load((folder / "envbranch.yaml").read_text())
    assert manifest["spec"]["version"] == f"v{VERSION}"
    [platform] = manifest["spec"]["platforms"]
    assert platform["uri"].endswith(f"/v{VERSION}/{archive.name}")
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    # The same inputs give the same archive, so the manifest's sha256 can be checked by anyone.
    _run("bash", REPO / "hack/krew-archive.sh", dist[0], tmp_path / "again")
    assert (tmp_path / "again" / archive.name).read_bytes() == archive.read_bytes()

    # As krew installs it: the archive unpacked into the plugin's store folder, `bin` linked from a
    # folder on PATH; kubectl then finds kubectl-envbranch and runs it for `kubectl envbranch`.
    store, bin_dir = tmp_path / "store" / f"v{VERSION}", tmp_path / "bin"
    store.mkdir(parents=True)
    bin_dir.mkdir()
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(["kubectl-envbranch", _wheel(dist[0]).name, "constraints.txt",
                                                 "LICENSE"])
        tar.extractall(store, filter="data")
    assert os.access(store / platform["bin"], os.X_OK)
    (bin_dir / "kubectl-envbranch").symlink_to(store / platform["bin"])
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    kubectl = find_binary("kubectl")
    first = _run(kubectl, "envbranch", "--help", cwd=tmp_path, env=env)
    assert "Usage: kubectl-envbranch " in first.stdout and "first run, installing envbranch" in first.stderr
    again = _run(kubectl, "envbranch", "--help", cwd=tmp_path, env=env, timeout=60)
    assert "Usage: kubectl-envbranch " in again.stdout and "installing" not in again.stderr
    assert (store / "venv" / "bin" / "kubectl-envbranch").is_file()  # inside krew's folder: gone on uninstall
