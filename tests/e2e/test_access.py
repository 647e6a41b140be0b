"""Branches and adoption never widen anyone's access: what the operator does with its own rights when
an Environment points at something that is not its creator's (issue 12). The admission side (who may
adopt, who may change a root's ttl) is in tests/integration/charts/test_permissions.py."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from envbranch_testing.postgres import Role
from envbranch_testing.processes import wait_until
from envbranch_testing.sample_app import create_shop_database
from envbranch_testing.scenario import Project


def _reason(status: dict[str, object]) -> tuple[str, str]:
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    return str(ready["reason"]), str(ready["message"])


@pytest.fixture
def neighbour(project: Project) -> Iterator[Project]:
    """A second project on the same PostgreSQL server, named `<project>-a`."""
    other = Project(project.api, f"{project.namespace}-a", project.pg)
    other.create_namespace(other.namespace)
    other.create_server()
    other.wait_server_ready()
    yield other
    other.delete_namespaces()


def test_a_database_the_server_does_not_list_is_never_adopted(project: Project) -> None:
    victim = f"payroll_{uuid.uuid4().hex[:6]}"
    create_shop_database(project.pg, victim)
    project.apply_env("grab", {"database": {"serverRef": "main", "name": victim}})
    status = project.wait_stalled("grab")
    reason, message = _reason(status)
    assert reason == "AdoptionNotAllowed"
    assert f"database {victim!r} is not in spec.adoptableDatabases of DatabaseServer 'main'" in message
    assert status.get("database") is None and not status.get("inventory")
    assert not project.namespace_exists(f"{project.namespace}-grab")
    # Listed by an owner, the same root adopts it on retry.
    project.allow_adoption(victim)
    project.custom.patch_namespaced_custom_object("envbranch.io", "v1alpha1", project.namespace, "environments",
                                                  "grab", {"metadata": {"annotations": {"envbranch.io/retry": "1"}}})
    assert project.wait_phase("grab", "Active")["database"] == {"server": "main", "name": victim,
                                                                 "strategy": "Adopted"}


def test_a_source_replaced_under_its_name_is_never_copied_from(shop: Project) -> None:
    first_uid = shop.uid("production")
    shop.apply_env("pinned", {"source": "production", "mode": "Full"},
                   annotations={"envbranch.io/inject-fault": "credentials"})
    status = shop.wait_stalled("pinned")
    assert status["parentUid"] == first_uid
    # The source is deleted and another object takes its name: a root on another database.
    shop.delete_env("production")
    shop.wait_gone("production")
    decoy = f"decoy_{uuid.uuid4().hex[:6]}"
    create_shop_database(shop.pg, decoy)
    shop.allow_adoption(decoy)
    shop.apply_env("production", {"database": {"serverRef": "main", "name": decoy}})
    shop.wait_phase("production", "Active")
    assert shop.uid("production") != first_uid
    shop.custom.patch_namespaced_custom_object("envbranch.io", "v1alpha1", shop.namespace, "environments", "pinned",
                                               {"metadata": {"annotations": {"envbranch.io/inject-fault": None}}})
    shop.custom.patch_namespaced_custom_object("envbranch.io", "v1alpha1", shop.namespace, "environments", "pinned",
                                               {"metadata": {"annotations": {"envbranch.io/retry": "1"}}})
    status = wait_until(lambda: (s := shop.status("pinned")).get("lastRetry") == "1" and
                        _reason(s)[0] == "SourceReplaced" and s, timeout=60,
                        what="the retried branch to refuse the replaced source")
    assert status["phase"] == "Failed" and f"UID {first_uid} is now {shop.uid('production')}" in _reason(status)[1]
    assert not shop.namespace_exists(f"{shop.namespace}-pinned")
    assert shop.tagged(shop.uid("pinned")) == []


def test_two_projects_never_share_a_database_name(project: Project, neighbour: Project) -> None:
    # `<p>-a`/`b` and `<p>`/`a-b` were both `<p>_a_b` before names were made collision-free.
    adopted = f"{project.namespace}-x"
    project.create_namespace(adopted)
    neighbour.apply_env("b", {"namespace": adopted})
    project.apply_env("a-b", {})
    first, second = neighbour.wait_phase("b", "Active", "Failed"), project.wait_phase("a-b", "Active", "Failed")
    assert (first["phase"], second["phase"]) == ("Active", "Active"), (first, second)
    assert first["database"]["name"] != second["database"]["name"]
    assert [t.name for t in neighbour.tagged(neighbour.uid("b")) if t.kind == "database"] == [first["database"]["name"]]
    assert [t.name for t in project.tagged(project.uid("a-b")) if t.kind == "database"] == [second["database"]["name"]]


def test_credentials_in_an_adopted_namespace_are_never_taken_over(project: Project, neighbour: Project) -> None:
    shared = f"{project.namespace}-shared"
    project.create_namespace(shared)
    project.apply_env("app", {"namespace": shared})
    project.wait_phase("app", "Active")
    before = project.core.read_namespaced_secret("app-db", shared)
    # Another project's root of the same name adopts the same namespace: its Secret would be `app-db` too.
    neighbour.apply_env("app", {"namespace": shared})
    status = neighbour.wait_stalled("app")
    reason, message = _reason(status)
    assert reason == "SecretConflict" and f"Secret app-db already exists in {shared}" in message
    after = project.core.read_namespaced_secret("app-db", shared)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.labels["envbranch.io/uid"] == project.uid("app")
    user = base64.b64decode(after.data["username"]).decode()
    password = base64.b64decode(after.data["password"]).decode()
    # The first project's credentials still work.
    with project.pg.connect(project.status("app")["database"]["name"], role=Role(user, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
    assert neighbour.tagged(neighbour.uid("app")) == []


def test_the_copy_of_a_secret_in_the_branch_carries_the_branch_uid(shop: Project) -> None:
    shop.apply_env("labelled", {"source": "production", "mode": "System", "copy": {"environmentVariables": True}})
    status = shop.wait_phase("labelled", "Active")
    uid = shop.uid("labelled")
    made = shop.core.list_namespaced_secret(status["namespace"]).items + \
        shop.core.list_namespaced_config_map(status["namespace"], label_selector="envbranch.io/environment").items
    ours = [o for o in made if (o.metadata.labels or {}).get("envbranch.io/environment") == "labelled"]
    assert ours and all(o.metadata.labels["envbranch.io/uid"] == uid for o in ours)
    assert {o.metadata.name for o in ours} >= {"labelled-db", "envbranch-environment"}
    with pytest.raises(client.ApiException):
        shop.core.read_namespaced_secret("labelled-db", f"{shop.namespace}-prod")
