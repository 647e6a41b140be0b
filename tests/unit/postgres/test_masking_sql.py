"""The masking SQL builders: what the copy's read sends to the source, checked as text (the values it
computes are checked on real servers in tests/integration/postgres/test_masked_copy.py)."""

from __future__ import annotations

import hashlib
import hmac
import subprocess

import pytest
from psycopg import sql

from envbranch.postgres import masking as pm
from envbranch.postgres.errors import classify

KEY = b"a project masking key, 32 bytes!"
SHAPES = {"email": pm.ColumnShape("text"), "name": pm.ColumnShape("varchar", 20, not_null=True),
          "born": pm.ColumnShape("date"), "n": pm.ColumnShape("int4"), "id": pm.ColumnShape("int8")}


def _masking(**masks: pm.ColumnMask) -> pm.Masking:
    return pm.Masking("p", KEY, {("public", "t", c): m for c, m in masks.items()})


def test_the_pads_make_rfc_2104_hmac_sha256() -> None:
    ipad, opad = _masking().pads()
    message = b"someone@realmail.org"
    ours = hashlib.sha256(opad + hashlib.sha256(ipad + message).digest()).digest()
    assert ours == hmac.new(KEY, message, hashlib.sha256).digest()
    long_key = pm.Masking("p", b"k" * 100, {})
    i2, o2 = long_key.pads()
    assert hashlib.sha256(o2 + hashlib.sha256(i2 + message).digest()).digest() == \
        hmac.new(b"k" * 100, message, hashlib.sha256).digest()


def test_the_key_travels_only_as_copy_data_never_in_the_statements() -> None:
    masking = _masking(email=pm.ColumnMask("Email"))
    ipad, opad = masking.pads()
    data = pm.key_copy_data(masking)
    assert data == b"\\\\x" + ipad.hex().encode() + b"\t\\\\x" + opad.hex().encode() + b"\n"
    text = " ".join(pm.key_table_statements()) + pm.masked_select(
        "public", "t", ["id", "email"], {"email": pm.ColumnMask("Email")}, SHAPES).as_string(None)
    for secret in (KEY.hex(), ipad.hex(), opad.hex(), KEY.decode()):
        assert secret not in text
    assert 'COPY "pg_temp"."envbranch_mask_key" FROM STDIN (FREEZE)' in pm.key_table_statements()


def test_masked_select_hashes_each_keyed_column_once_and_keeps_the_rest() -> None:
    query = pm.masked_select("public", "t", ["id", "email", "name", "born"],
                             {"email": pm.ColumnMask("Email"), "name": pm.ColumnMask("PersonName"),
                              "born": pm.ColumnMask("DateShift", max_days=10)},
                             SHAPES, where=sql.SQL("ctid >= '(0,0)'::tid")).as_string(None)
    assert query.startswith('SELECT "src"."id", ')
    assert 'FROM ONLY "public"."t" AS src CROSS JOIN LATERAL (SELECT ' in query
    assert query.count("pg_catalog.sha256(") == 2 * 3  # inner and outer hash, per keyed column
    assert "OFFSET 0) AS m WHERE ctid >= '(0,0)'::tid" in query
    assert "'@example.invalid'" in query and "pg_catalog.left(" in query  # varchar(20) name truncated
    assert "::pg_catalog.date" in query


@pytest.mark.parametrize(("mask", "shape", "error"), [
    (pm.ColumnMask("Null"), pm.ColumnShape("text", not_null=True), "NOT NULL"),
    (pm.ColumnMask("Hash"), pm.ColumnShape("int4"), "bigint"),
    (pm.ColumnMask("DateShift"), pm.ColumnShape("text"), "date"),
    (pm.ColumnMask("Email"), pm.ColumnShape("varchar", 20), "at least"),
    (pm.ColumnMask("PersonName"), pm.ColumnShape("jsonb"), "text"),
])
def test_a_rule_that_cannot_fit_its_column_is_refused(mask: pm.ColumnMask, shape: pm.ColumnShape,
                                                      error: str) -> None:
    with pytest.raises(pm.MaskingError, match=error):
        pm.mask_expression(sql.SQL("v"), sql.SQL("d"), mask, shape)


def test_unkeyed_functions_need_no_key_and_constants_are_literals() -> None:
    query = pm.masked_select("s", "t", ["email"], {"email": pm.ColumnMask("Constant", value="it's")},
                             SHAPES).as_string(None)
    assert "LATERAL" not in query and "'it''s'" in query
    partial = pm.masked_select("s", "t", ["email"], {"email": pm.ColumnMask("Partial", keep=2)},
                               SHAPES).as_string(None)
    assert "pg_catalog.right(" in partial and "LATERAL" not in partial


def _column(table: str, column: str, type_name: str = "text", root: tuple[str, str] | None = None
            ) -> pm.SourceColumn:
    return pm.SourceColumn("public", table, column, pm.ColumnShape(type_name), type_name, root)


def test_table_reads_cover_partitions_through_their_root_and_refuse_unknown_columns() -> None:
    masking = _masking(email=pm.ColumnMask("Email"))
    reads = pm.TableReads(pm.Masking("p", KEY, {("public", "events", "email"): pm.ColumnMask("Email")}),
                          [_column("events_2026", "email", root=("public", "events")), _column("events_2026", "id"),
                           _column("events_2025", "email", root=("public", "events"))])
    assert reads.column_count == 1  # one rule, counted once over its partitions
    assert reads.query("public", "events_2025", ["email"]) is not None
    assert reads.query("public", "events_2026", ["id", "email"]) is not None
    assert reads.query("public", "other", ["id"]) is None
    with pytest.raises(pm.MaskingError, match=r"does not have: public\.t\.email"):
        pm.TableReads(masking, [_column("u", "email")])


def test_a_column_the_plan_never_classified_stops_the_copy() -> None:
    planned = pm.Masking("p", KEY, {("public", "t", "email"): pm.ColumnMask("Email")},
                         frozenset({("public", "t", "email")}))
    assert pm.TableReads(planned, [_column("t", "email")]).column_count == 1
    with pytest.raises(pm.MaskingError, match=r"never classified: public\.t\.phone"):
        pm.TableReads(planned, [_column("t", "email"), _column("t", "phone")])


def test_a_failure_message_never_carries_the_key_or_its_pads() -> None:
    masking = _masking()
    ipad, opad = masking.pads()
    stderr = f"ERROR:  invalid input near {ipad.hex()}\nDETAIL:  {opad.hex()} {KEY.decode()} {KEY.hex()}"
    message = classify(subprocess.CalledProcessError(1, ["psql"], stderr=stderr.encode()), masking.secrets()).message
    assert "psql failed" in message and "invalid input near" in message
    for secret in masking.secrets():
        assert secret not in message
