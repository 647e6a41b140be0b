"""The chart carries the same CRDs as crds/, and the scripts that cannot run here at least parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_chart_crds_match_the_generated_crds() -> None:
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert generated and sorted(p.name for p in (REPO / "charts/envbranch/crds").glob("*.yaml")) == generated
    for name in generated:
        assert (REPO / "charts/envbranch/crds" / name).read_text() == (REPO / "crds" / name).read_text(), \
            f"charts/envbranch/crds/{name} drifted: run `make crds`"


def test_plain_chart_manifests_are_valid_yaml_with_kinds() -> None:
    for name in ("copy-policy.yaml", "user-roles.yaml", "operator-rbac.yaml"):
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
