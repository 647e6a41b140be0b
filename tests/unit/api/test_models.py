"""The models accept what the design allows and refuse the rest; the CRDs never drift from them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from envbranch.api import EnvironmentSpec, parse_ttl
from envbranch.api.crdgen import generate

REPO = Path(__file__).resolve().parents[3]


def test_wire_names_are_camel_case() -> None:
    spec = EnvironmentSpec.model_validate({"source": "production", "mode": "Full", "displayName": "Feature_Login",
                                           "copy": {"fileProviders": True}, "database": {"serverRef": "main"}})
    assert spec.copy_flags is not None and spec.copy_flags.file_providers
    assert spec.database is not None and spec.database.strategy == "Auto"
    assert spec.model_dump(by_alias=True, exclude_none=True)["copy"]["fileProviders"] is True


@pytest.mark.parametrize("spec", [
    {"displayName": "with space"}, {"mode": "Partial"}, {"copy": {"everything": True}},
    {"source": "UPPER"}, {"ttl": "3 days"}, {"unknown": 1},
])
def test_bad_specs_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EnvironmentSpec.model_validate(spec)


@pytest.mark.parametrize(("value", "expected"), [
    ("72h", dt.timedelta(hours=72)), ("90m", dt.timedelta(minutes=90)),
    ("1h30m", dt.timedelta(minutes=90)), ("7d", dt.timedelta(days=7)), ("5s", dt.timedelta(seconds=5)),
])
def test_parse_ttl(value: str, expected: dt.timedelta) -> None:
    assert parse_ttl(value) == expected


def test_parse_ttl_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="invalid ttl"):
        parse_ttl("soon")


@pytest.mark.parametrize(("spec", "policy"), [
    ({"namespace": "shop-prod"}, "Retain"), ({"database": {"name": "shop"}}, "Retain"), ({}, "Delete"),
    ({"source": "production", "mode": "Full"}, "Delete"), ({"namespace": "x", "deletionPolicy": "Delete"}, "Delete"),
])
def test_effective_deletion_policy(spec: dict[str, object], policy: str) -> None:
    assert EnvironmentSpec.model_validate(spec).effective_deletion_policy() == policy


def test_committed_crds_match_the_models() -> None:
    for name, text in generate().items():
        assert (REPO / "crds" / name).read_text() == text, f"crds/{name} drifted: run `make crds`"


def _walk(node: object) -> list[dict[str, object]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for v in node.values():
            found += _walk(v)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v)
    return found


def test_schemas_are_structural() -> None:
    for text in generate().values():
        schema = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for node in _walk(schema):
            assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node
            if "properties" in node:
                assert node.get("type") == "object"
