"""`make chart` (helm package), what the release workflow pushes as an OCI artifact: the packaged chart
carries pyproject.toml's version, its CRDs and values schema, and renders the published image
ghcr.io/envbranch/operator:<version> by default, or a locally built image when told to."""

from __future__ import annotations

import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

from envbranch_testing.tools import documents, run_tool

REPO = Path(__file__).resolve().parents[3]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _operator(manifests: str) -> dict[str, Any]:
    [deployment] = [d for d in documents(manifests) if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_make_chart_packages_the_release_chart(tmp_path: Path) -> None:
    out = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "chart", f"DIST={tmp_path}"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    package = tmp_path / "chart" / f"envbranch-{VERSION}.tgz"
    assert [p.name for p in (tmp_path / "chart").iterdir()] == [package.name]
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
        chart_yaml = tar.extractfile("envbranch/Chart.yaml")
        assert chart_yaml is not None
        chart = yaml.safe_load(chart_yaml.read())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)
    assert {"envbranch/values.schema.json", "envbranch/crds/envbranch.io_environments.yaml",
            "envbranch/crds/envbranch.io_databaseservers.yaml", "envbranch/templates/deployment.yaml"} <= names

    published = _operator(run_tool("helm", "template", "envbranch", str(package)).stdout)
    assert published["image"] == f"ghcr.io/envbranch/operator:{VERSION}"
    assert published["imagePullPolicy"] == "IfNotPresent"
    # README's local-image path: an image built and loaded into the node, never pulled.
    local = _operator(run_tool("helm", "template", "envbranch", str(package),
                               "--set", "image.repository=envbranch/operator", "--set", "image.tag=dev",
                               "--set", "image.pullPolicy=Never").stdout)
    assert (local["image"], local["imagePullPolicy"]) == ("envbranch/operator:dev", "Never")
