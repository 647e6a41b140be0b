"""The classifier: which source columns look personal, which a policy covers, and what a policy
may override."""

from __future__ import annotations

from typing import Any

import pytest
from core_fakes import fake_context

from envbranch.api.maskingpolicy import MaskingPolicySpec
from envbranch.branching import masking
from envbranch.postgres.masking import ColumnMask, ColumnShape, SourceColumn


def _col(table: str, column: str, type_name: str = "text", schema: str = "public",
         root: tuple[str, str] | None = None) -> SourceColumn:
    return SourceColumn(schema, table, column, ColumnShape(type_name), type_name, root)


def _spec(**fields: Any) -> MaskingPolicySpec:
    return MaskingPolicySpec.model_validate({"keySecretRef": {"name": "k"}, **fields})


@pytest.mark.parametrize("name", ["email", "e_mail", "contact_email", "first_name", "LastName", "name", "phone",
                                  "mobile", "street_address", "postcode", "birth_date", "dob", "ssn",
                                  "passport_no", "iban", "card_number", "cvv", "api_token", "client_secret",
                                  "password_hash", "api_key", "ip", "last_ip_address", "user_agent"])
def test_names_that_look_personal(name: str) -> None:
    assert masking.looks_personal(_col("t", name), masking.PERSONAL_NAME_PATTERNS, masking.PERSONAL_TYPES)


@pytest.mark.parametrize("name", ["id", "title", "price_cents", "country", "created_at", "sku", "zip_enabled",
                                  "status", "tenant_id", "ship_method"])
def test_names_that_do_not(name: str) -> None:
    assert not masking.looks_personal(_col("t", name), masking.PERSONAL_NAME_PATTERNS, masking.PERSONAL_TYPES)


def test_network_addresses_are_personal_by_type() -> None:
    assert masking.looks_personal(_col("t", "origin", "inet"), (), masking.PERSONAL_TYPES)


def test_rules_and_not_personal_cover_columns_and_partitions_are_named_by_their_root() -> None:
    columns = [_col("users", "email"), _col("users", "name"), _col("users", "phone", "varchar"),
               _col("audit", "ip", "inet", schema="ops"), _col("events_2026", "user_email", root=("public", "events")),
               _col("events_2025", "user_email", root=("public", "events"))]
    spec = _spec(rules=[{"table": "users", "column": "email", "function": "Email"}], notPersonal=["users.name"])
    assert masking.unclassified(spec, columns) == ["public.users.phone (varchar)", "ops.audit.ip (inet)",
                                                   "public.events.user_email (text)"]
    covered = _spec(rules=[{"table": "users", "column": "email", "function": "Email"},
                           {"table": "events", "column": "user_email", "function": "Email"},
                           {"table": "ops.audit", "column": "ip", "function": "Null"}],
                    notPersonal=["users.name", "public.users.phone"])
    assert masking.unclassified(covered, columns) == []


def test_a_policy_replaces_the_built_in_lists() -> None:
    columns = [_col("t", "email"), _col("t", "nickname"), _col("t", "origin", "inet")]
    spec = _spec(personalNamePatterns=["nick"], personalTypes=[])
    assert masking.unclassified(spec, columns) == ["public.t.nickname (text)"]


def test_rules_resolve_with_their_parameters_and_defaults() -> None:
    spec = _spec(rules=[{"table": "billing.cards", "column": "pan", "function": "Partial", "keep": 2},
                        {"table": "users", "column": "email", "function": "Email"}])
    assert masking.resolved_masks(spec) == {("billing", "cards", "pan"): ColumnMask("Partial", keep=2),
                                            ("public", "users", "email"): ColumnMask("Email")}


def test_masking_is_required_of_a_personal_root_and_inherited_from_a_masked_source() -> None:
    ctx = fake_context()  # no API call is made: every lineage here ends at the given parent
    root = {"metadata": {"name": "production"}, "spec": {"personalData": True}}
    with pytest.raises(masking.Invalid) as info:
        masking.plan_masking(ctx, "shop", None, "Full", root, ("main", "shop"))
    assert info.value.reason == "MaskingRequired"
    assert masking.plan_masking(ctx, "shop", None, "System", root, ("main", "shop")) is None
    masked_branch = {"metadata": {"name": "masked"}, "spec": {"source": "production"},
                     "status": {"masking": {"policy": "pii", "columns": 7}}}
    inherited = masking.plan_masking(ctx, "shop", None, "Full", masked_branch, ("main", "shop_masked"))
    assert inherited == masking.MaskPlan("pii", 7, None)
    plain_root = {"metadata": {"name": "other"}, "spec": {}}
    assert masking.plan_masking(ctx, "shop", None, "Full", plain_root, ("main", "other")) is None
