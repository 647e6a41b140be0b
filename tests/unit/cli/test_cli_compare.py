"""Pure helpers of `envbranch diff`: schema normalisation, the unified diff, configuration by category."""

from __future__ import annotations

import base64

from envbranch.cli.compare import config_diff, config_differs, schema_diff
from envbranch.postgres.schema import normalise_schema

PROD_DUMP = """--
-- PostgreSQL database dump
--

\\restrict Xk2pQ9aBcD

-- Dumped from database version 18.1
-- Dumped by pg_dump version 18.1

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
SET default_table_access_method = heap;


--
-- Name: orders; Type: TABLE; Schema: public; Owner: admin
--

CREATE TABLE public.orders (
    id bigint NOT NULL
);


ALTER TABLE public.orders OWNER TO admin;
COMMENT ON DATABASE shop_prod IS 'envbranch:uid=0b6f1c2e-1111-4111-8111-111111111111';
ALTER DATABASE shop_prod SET work_mem TO '8MB';

\\unrestrict Xk2pQ9aBcD
"""


def _branch_dump(extra: str = "") -> str:
    return (PROD_DUMP.replace("Xk2pQ9aBcD", "Zz9otherKey").replace("Owner: admin", "Owner: shop_p_feature")
            .replace("OWNER TO admin", "OWNER TO shop_p_feature").replace("shop_prod", "shop_p_feature")
            .replace("0b6f1c2e-1111-4111-8111-111111111111", "9d9d9d9d-2222-4222-8222-222222222222")
            .replace("    id bigint NOT NULL\n", "    id bigint NOT NULL" + extra + "\n"))


def test_normalised_dumps_of_the_same_schema_are_equal() -> None:
    prod = normalise_schema(PROD_DUMP, "shop_prod")
    branch = normalise_schema(_branch_dump(), "shop_p_feature")
    assert prod == branch
    assert "\nSET " not in prod and "set_config" not in prod and "restrict" not in prod
    assert "OWNER TO" not in prod and "Owner: admin" not in prod and "envbranch:uid" not in prod
    assert "ALTER DATABASE <database> SET work_mem" in prod
    assert "\n\n\n" not in prod and "CREATE TABLE public.orders" in prod


def test_database_name_is_replaced_only_as_a_whole_name() -> None:
    text = normalise_schema('CREATE TABLE public.shop_prod_log (x int);\nALTER DATABASE "shop_prod" SET a TO 1;\n',
                            "shop_prod")
    assert "public.shop_prod_log" in text and 'ALTER DATABASE <database> SET' in text


def test_schema_diff_shows_an_added_column_and_nothing_when_equal() -> None:
    prod = normalise_schema(PROD_DUMP, "shop_prod")
    assert schema_diff(prod, normalise_schema(_branch_dump(), "shop_p_feature"), "a", "b") == ""
    changed = normalise_schema(_branch_dump(",\n    coupon text"), "shop_p_feature")
    diff = schema_diff(prod, changed, "production (shop_prod)", "feature (shop_p_feature)")
    assert diff.startswith("--- production (shop_prod)\n+++ feature (shop_p_feature)\n")
    assert "+    coupon text\n" in diff and "-    id bigint NOT NULL\n" in diff


def _b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def _obj(name: str, category: str, data: dict[str, str], **extra: object) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"envbranch.io/category": category}}, "data": data, **extra}


def test_config_diff_by_category_masks_secret_values() -> None:
    a = [("ConfigMap", _obj("uploads", "file-providers", {"bucket": "b"})),
         ("ConfigMap", _obj("app-env", "environment-variables", {"LOG_LEVEL": "info", "CURRENCY": "EUR"})),
         ("Secret", _obj("app-secrets", "environment-variables", {"STRIPE_KEY": _b64("sk_live_prod")})),
         ("Secret", _obj("google-login", "auth-providers", {"client-secret": _b64("g-secret")}))]
    b = [("ConfigMap", _obj("app-env", "environment-variables", {"LOG_LEVEL": "debug", "CURRENCY": "EUR",
                                                                 "NEW": "1"})),
         ("Secret", _obj("app-secrets", "environment-variables", {"STRIPE_KEY": _b64("sk_test_branch")})),
         ("Secret", _obj("google-login", "auth-providers", {"client-secret": _b64("g-secret")})),
         ("ConfigMap", _obj("cors", "security-config", {"x": "y"}))]
    diff = config_diff(a, b)  # type: ignore[arg-type]
    assert diff["file-providers"] == [{"kind": "ConfigMap", "name": "uploads", "state": "only-in-a"}]
    assert diff["security-config"] == [{"kind": "ConfigMap", "name": "cors", "state": "only-in-b"}]
    assert diff["auth-providers"] == [{"kind": "Secret", "name": "google-login", "state": "same"}]
    env = {e["name"]: e for e in diff["environment-variables"]}
    assert env["app-env"] == {"kind": "ConfigMap", "name": "app-env", "state": "differs",
                              "keys": {"added": ["NEW"], "changed": ["LOG_LEVEL"]},
                              "values": {"LOG_LEVEL": {"a": "info", "b": "debug"}}}
    assert env["app-secrets"] == {"kind": "Secret", "name": "app-secrets", "state": "differs",
                                  "keys": {"changed": ["STRIPE_KEY"]}}
    assert "sk_" not in repr(diff) and _b64("sk_live_prod") not in repr(diff)
    assert config_differs(diff)
    same = config_diff(a[:1], a[:1])  # type: ignore[arg-type]
    assert not config_differs(same)
