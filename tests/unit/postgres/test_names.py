from __future__ import annotations

import re
import subprocess

import pytest

from envbranch.postgres import branch_database_name, branch_role_name, classify
from envbranch.postgres.credentials import new_password


@pytest.mark.parametrize(("project", "env"), [
    ("shop", "feature-login"), ('we"ird', "it's here"), ("Upper Case", "MiXeD"), ("café", "naïve-ünïcode"),
    ("p" * 80, "e" * 80), ("", ""),
])
def test_names_are_valid_identifiers_of_at_most_63_bytes(project: str, env: str) -> None:
    for name in (branch_database_name(project, env), branch_role_name(project, env)):
        assert re.fullmatch(r"[a-z0-9_]{1,63}", name), name
        assert len(name.encode()) <= 63
    assert branch_database_name(project, env) == branch_database_name(project, env)
    assert branch_database_name(project, env) != branch_role_name(project, env)


def test_long_names_sharing_a_prefix_do_not_collide() -> None:
    prefix = "x" * 100
    assert branch_database_name("shop", prefix + "a") != branch_database_name("shop", prefix + "b")
    assert branch_role_name("shop", prefix + "a") != branch_role_name("shop", prefix + "b")


def test_short_names_read_naturally() -> None:
    assert branch_database_name("shop", "feature-login") == "shop__feature_login"
    assert branch_role_name("shop", "feature-login") == "shop__feature_login_owner"


@pytest.mark.parametrize(("first", "second"), [
    (("shop-a", "b"), ("shop", "a-b")),            # the collision of the old `<project>_<name>` names
    (("a--b", "c"), ("a", "b--c")),                # '--' inside a label
    (("a", "b--c"), ("a-b", "c")),
    (("shop", "x" * 70), ("shop", "x" * 71)),      # cut to 63 bytes
    (("shop", "b"), ("shop-b", "")),
])
def test_two_projects_never_get_the_same_names(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert branch_database_name(*first) != branch_database_name(*second)
    assert branch_role_name(*first) != branch_role_name(*second)


def test_a_hashed_name_never_equals_a_readable_one() -> None:
    hashed = branch_database_name("a--b", "c")
    assert "___" in hashed
    # An environment named after the hashed form is readable again, and still different.
    project, _, rest = hashed.partition("__")
    assert branch_database_name(project, rest.replace("_", "-").strip("-")) != hashed


def test_passwords_are_32_random_bytes() -> None:
    import base64

    first, second = new_password(), new_password()
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "=")) == 32


def test_classify_scrubs_passwords_from_tool_errors() -> None:
    err = subprocess.CalledProcessError(1, ["/usr/bin/pg_dump"], stderr=b"FATAL: bad conninfo password=hunter2hunter2")
    classified = classify(err, ("hunter2hunter2",))
    assert "hunter2hunter2" not in str(classified) and "hunter2hunter2" not in repr(classified)
    assert "pg_dump failed (exit 1)" in str(classified)
