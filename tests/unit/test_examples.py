"""examples/ is the whole story a user applies (`kubectl apply -f examples/`): the project, the
DatabaseServer with its admin Secret (placeholders only), the root and its branches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from envbranch.api.databaseserver import DatabaseServerSpec
from envbranch.api.maskingpolicy import MaskingPolicySpec
from envbranch.postgres.masking import MIN_KEY_BYTES
from envbranch_testing.demo import EXAMPLES, SERVER_EXAMPLE


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(EXAMPLES).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_every_object_the_demo_needs_is_in_examples() -> None:
    assert set(_objects()) == {("Namespace", "shop"), ("Secret", "main-admin"), ("DatabaseServer", "main"),
                               ("Environment", "production"), ("Environment", "staging"),
                               ("Environment", "feature-x"), ("Secret", "masking-key"), ("MaskingPolicy", "pii"),
                               ("Environment", "qa-masked"), ("Environment", "snapshot"),
                               ("Environment", "pr-1234")}


def test_the_masked_branch_names_a_policy_whose_key_is_a_placeholder() -> None:
    objs = _objects()
    policy = MaskingPolicySpec.model_validate(objs[("MaskingPolicy", "pii")]["spec"])
    branch = objs[("Environment", "qa-masked")]["spec"]
    assert branch["mode"] == "Full" and branch["database"]["masking"] == "pii"
    key = objs[("Secret", policy.key_secret_ref.name)]["stringData"][policy.key_secret_ref.key]
    assert key.startswith("change-me") and len(key) >= MIN_KEY_BYTES
    # The shop's personal columns (customers.email, customers.name) are covered.
    assert {(r.table, r.column) for r in policy.rules} == {("customers", "email"), ("customers", "name")}


def test_the_server_lets_production_adopt_its_database() -> None:
    objs = _objects()
    server = DatabaseServerSpec.model_validate(objs[("DatabaseServer", "main")]["spec"])
    production = objs[("Environment", "production")]["spec"]
    assert production["database"]["serverRef"] == "main"
    assert production["database"]["name"] in (server.adoptable_databases or [])
    assert server.admin_secret_ref.name == "main-admin"


def test_the_admin_secret_holds_a_placeholder_only() -> None:
    secret = _objects()[("Secret", "main-admin")]
    assert secret["stringData"]["password"] == "change-me"
    assert "data" not in secret
    assert SERVER_EXAMPLE.is_file()
