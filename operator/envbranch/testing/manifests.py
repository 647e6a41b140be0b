"""Applying the chart's plain manifests (policy, roles) to a cluster, as `kubectl apply` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from envbranch.testing.controlplane import REPO_ROOT, ControlPlane

CHART_TEMPLATES = REPO_ROOT / "charts" / "envbranch" / "templates"


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply(cp: ControlPlane, *names: str) -> None:
    for name in names:
        cp.kubectl("apply", "-f", str(CHART_TEMPLATES / name))
