"""Applying the chart's plain manifests (policy, roles) to a cluster, as `kubectl apply` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from envbranch_testing.controlplane import REPO_ROOT, ControlPlane
from envbranch_testing.tools import CHART, RELEASE, run_tool

CHART_TEMPLATES = REPO_ROOT / "charts" / "envbranch" / "templates"


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply(cp: ControlPlane, *names: str) -> None:
    for name in names:
        cp.kubectl("apply", "-f", str(CHART_TEMPLATES / name))


def apply_rendered(cp: ControlPlane, name: str, namespace: str = "envbranch-system", release: str = RELEASE,
                   values: tuple[str, ...] = ()) -> None:
    """One template that needs Helm (the release's namespace and name, the ServiceAccount, values such
    as watchNamespaces=...), rendered over the chart's default values and applied."""
    sets = [arg for value in values for arg in ("--set", value)]
    text = run_tool("helm", "template", release, str(CHART), "--namespace", namespace, *sets,
                    "--show-only", f"templates/{name}").stdout
    cp.kubectl("apply", "-f", "-", input=text)
