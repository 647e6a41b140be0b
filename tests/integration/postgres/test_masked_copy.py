"""A masked Dump on each server version: the rows are masked as the source reads them, every
constraint holds, the same value masks alike in every table and copy, nothing original reaches the
branch (rows or files), and the key reaches neither the statement log nor pg_stat_activity."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch.api.maskingpolicy import MaskingPolicySpec
from envbranch.branching.masking import resolved_masks, unclassified
from envbranch.postgres import cloning
from envbranch.postgres import masking as pg_masking
from envbranch_testing.personal_schema import (
    PERSONAL_SCHEMA,
    fill_sql,
    found_in_tables,
    found_on_disk,
    key_traces,
    policy_spec,
    sample_values,
)
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import admin_server

ROWS = 20_000  # customers and orders over 1 MB: copied by psql readers; newsletter on the snapshot's session
KEY = b"masking-key-" + uuid.uuid4().hex.encode()
TABLES = ("customers", "orders", "newsletter", "visits")


@pytest.fixture(scope="module")
def masked(postgres_each: Postgres) -> Iterator[tuple[Postgres, list[str], list[str]]]:
    """`personal` and two masked copies of it (the second reading its big tables in slices), made
    while the statement log records everything and pg_stat_activity is sampled; yields (server,
    databases, what the sampling saw)."""
    pg = postgres_each
    monkeypatch = pytest.MonkeyPatch()
    source = f"personal_{uuid.uuid4().hex[:6]}"
    with pg.connect(role=pg.admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source)))
    with pg.connect(source, role=pg.admin) as conn:
        conn.execute(PERSONAL_SCHEMA)
        conn.execute(fill_sql(ROWS))
    server = admin_server(pg)
    spec = MaskingPolicySpec.model_validate(policy_spec("unused"))
    masking = pg_masking.Masking("pii", KEY, resolved_masks(spec))
    copies = [f"{source}_m{i}" for i in (1, 2)]
    _log_everything(pg, True)
    seen: list[str] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_activity, args=(pg, seen, stop), daemon=True)
    sampler.start()
    try:
        for copy in copies:
            if copy == copies[1]:  # the second copy reads the big tables in block-range slices
                monkeypatch.setattr(cloning, "SPLIT_BYTES", 1024 * 1024)
            engine.clone_database(server, source, server, copy, mode="Full", strategy="Dump", uid=str(uuid.uuid4()),
                                  masking=masking)
    finally:
        stop.set()
        sampler.join()
        _log_everything(pg, False)
        monkeypatch.undo()
    yield pg, [source, *copies], seen
    for name in [*copies, source]:
        with server.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _log_everything(pg: Postgres, on: bool) -> None:
    with pg.connect() as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'" if on else "ALTER SYSTEM RESET log_statement")
        conn.execute("SELECT pg_reload_conf()")


def _sample_activity(pg: Postgres, seen: list[str], stop: threading.Event) -> None:
    with pg.connect() as conn:
        while not stop.is_set():
            seen += [str(r[0]) for r in conn.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'envbranch'").fetchall()]


def _rows(pg: Postgres, db: str, query: str) -> list[tuple[object, ...]]:
    with pg.connect(db) as conn:
        return conn.execute(query).fetchall()


def test_rows_are_masked_and_counted_alike(masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, (source, copy, _), _ = masked
    for table in TABLES:
        count = f"SELECT count(*) FROM {table}"
        assert _rows(pg, copy, count) == _rows(pg, source, count)
    first = _rows(pg, copy, "SELECT email, full_name, phone, birth_date, card_number, iban, last_login_ip, api_token,"
                  " country FROM customers WHERE id = 1")[0]
    email, name, phone, born, card, iban, ip, token, country = first
    assert str(email).startswith("u") and str(email).endswith("@example.invalid")
    assert len(str(name).split(" ")) == 2 and len(str(name)) <= 60
    assert str(phone).startswith("+1 555 ") and len(str(phone)) == 14
    original = dt.date(1960, 1, 2)
    assert isinstance(born, dt.date) and 1 <= abs((born - original).days) <= 30
    assert card == "*" * 15 + "0001" and ip is None and token == "redacted" and country == "FR"
    # Hash is HMAC-SHA256 with the key, as any HMAC library computes it.
    expected = hmac.new(KEY, b"DE89370400440532000001", hashlib.sha256).hexdigest()[:32]
    assert iban == expected


def test_constraints_hold_on_masked_columns(masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, (_, copy, _), _ = masked
    # The foreign key and unique index on e-mail were built (and validated) after the load.
    constraints = {str(r[0]) for r in _rows(pg, copy, "SELECT conname FROM pg_constraint WHERE contype IN ('f', 'u') "
                                                  "AND connamespace = 'public'::regnamespace")}
    assert constraints == {"customers_email_key", "orders_customer_email_fkey"}
    assert _rows(pg, copy, "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email") == \
        [(2 * ROWS,)]
    assert _rows(pg, copy, "SELECT count(DISTINCT email) FROM customers") == [(ROWS,)]
    # The domains' and CHECKs' rules, asked again of every row.
    assert _rows(pg, copy, r"SELECT count(*) FROM customers WHERE email !~ '^[^@\s]+@[^@\s]+\.[a-z]+$' "
                 r"OR phone !~ '^\+?[0-9 ()-]{7,20}$' OR email NOT LIKE '%@%' "
                 "OR length(card_number) NOT BETWEEN 12 AND 19 OR birth_date <= date '1900-01-01'") == [(0,)]


def test_the_same_value_masks_alike_in_every_table_and_every_copy(
        masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, (_, first, second), _ = masked
    query = ("SELECT count(*) FILTER (WHERE c.email = n.email), count(*) FROM customers c JOIN newsletter n "
             "ON n.signed_up = timestamptz '2025-01-01' + c.id * interval '1 hour'")
    assert _rows(pg, first, query) == [(ROWS // 3 + 1, ROWS // 3 + 1)]
    # A partitioned table's rule masked both partitions, alike.
    assert _rows(pg, first, "SELECT count(*) FROM visits v JOIN customers c ON c.email = v.visitor_email "
                 "AND c.id = v.id") == [(ROWS,)]
    everything = "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {} x"
    for table in TABLES:
        assert _rows(pg, first, everything.format(table)) == _rows(pg, second, everything.format(table))


def test_a_spooled_masked_copy_spools_and_loads_the_masked_rows(
        masked: tuple[Postgres, list[str], list[str]], tmp_path: Path) -> None:
    pg, (source, first, _), _ = masked
    server, copy = admin_server(pg), f"{source}_spooled"
    spec = MaskingPolicySpec.model_validate(policy_spec("unused"))
    seen: list[list[str]] = []

    def progress(step: str, percent: int) -> None:
        if step == "data" and percent >= 50 and not seen:  # loading: the spool is written in full
            seen.append(found_in_files(sorted(tmp_path.rglob("*.copy")), sample_values(ROWS)))

    spooled = engine.DumpOptions(max_rate=256 * 1024**2, spool=engine.Spool(str(tmp_path)))
    result = engine.clone_database(server, source, server, copy, mode="Full", strategy="Dump", uid=str(uuid.uuid4()),
                                   masking=pg_masking.Masking("pii", KEY, resolved_masks(spec)), progress=progress,
                                   options=spooled)
    try:
        assert result.spooled and seen == [[]]  # the spool held masked rows only
        everything = "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {} x"
        for table in TABLES:  # masked as the streamed copy was, value for value
            assert _rows(pg, copy, everything.format(table)) == _rows(pg, first, everything.format(table)), table
    finally:
        engine.drop_database(server, copy)


def found_in_files(files: list[Path], samples: list[str]) -> list[str]:
    """The samples any of `files` holds (a non-empty search, or the check proves nothing)."""
    assert files
    data = b"".join(f.read_bytes() for f in files)
    return [v for v in samples if v.encode() in data]


def test_no_original_value_reaches_the_branch_rows_or_files(masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, (source, copy, _), _ = masked
    samples = sample_values(ROWS)
    assert found_in_tables(pg, source, samples) == samples  # the search finds what is there
    assert found_in_tables(pg, copy, samples) == []
    assert found_on_disk(pg, source, samples[:3]) == samples[:3]
    assert found_on_disk(pg, copy, samples) == []


def test_the_key_is_in_neither_the_statement_log_nor_pg_stat_activity(
        masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, _, seen = masked
    log = (pg.base_dir / "postgres.log").read_text(errors="replace")
    # The log recorded the masked reads (so it would have shown a key sent as text or parameter).
    assert "LOG:  statement: COPY (SELECT" in log and 'COPY "pg_temp"."envbranch_mask_key" FROM STDIN' in log
    assert any("envbranch_mask_key" in q for q in seen), "the sampling never saw a masked read"
    for trace in key_traces(KEY):
        assert trace not in log
        assert not [q for q in seen if trace in q]


def test_the_classifier_reads_the_source_and_every_personal_column_is_covered(
        masked: tuple[Postgres, list[str], list[str]]) -> None:
    pg, (source, _, _), _ = masked
    with admin_server(pg).connect(source) as conn:
        columns = pg_masking.source_columns(conn)
    spec = MaskingPolicySpec.model_validate(policy_spec("unused"))
    assert unclassified(spec, columns) == []
    bare = MaskingPolicySpec.model_validate({"keySecretRef": {"name": "k"}})
    assert "public.customers.last_login_ip (inet)" in unclassified(bare, columns)
    assert "public.customers.phone (public.phone_number)" in unclassified(bare, columns)
    assert "public.customers.country (text)" not in unclassified(bare, columns)


TYPES_SCHEMA = """
CREATE DOMAIN short_code AS char(10) CHECK (VALUE ~ '^[0-9a-f]{10}$');
CREATE TABLE typed (
    id int PRIMARY KEY, ref uuid UNIQUE, blob bytea, big bigint UNIQUE, seen timestamptz, code short_code,
    prefs jsonb NOT NULL, age int
);
INSERT INTO typed SELECT i, md5(i::text)::uuid, decode(md5(i::text), 'hex'), i * 1000003,
    timestamptz '2026-03-01 12:00+00' + i * interval '1 minute', left(md5(i::text), 10), jsonb_build_object('i', i),
    i % 90 FROM generate_series(1, 500) i;
"""


def test_every_masked_type_fits_its_column(postgres_each: Postgres) -> None:
    pg, server = postgres_each, admin_server(postgres_each)
    source = f"typed_{uuid.uuid4().hex[:6]}"
    with pg.connect(role=pg.admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source)))
    with pg.connect(source, role=pg.admin) as conn:
        conn.execute(TYPES_SCHEMA)
    masks = {"ref": pg_masking.ColumnMask("Hash"), "blob": pg_masking.ColumnMask("Hash"),
             "big": pg_masking.ColumnMask("Hash"), "seen": pg_masking.ColumnMask("DateShift", max_days=2),
             "code": pg_masking.ColumnMask("Hash"), "age": pg_masking.ColumnMask("Null"),
             "prefs": pg_masking.ColumnMask("Constant", value='{"masked": true}')}
    masking = pg_masking.Masking("types", KEY, {("public", "typed", c): m for c, m in masks.items()})
    try:
        engine.clone_database(server, source, server, f"{source}_m", mode="Full", strategy="Dump",
                              uid=str(uuid.uuid4()), masking=masking)
        rows = _rows(pg, f"{source}_m", "SELECT ref, blob, big, seen, code, prefs, age FROM typed ORDER BY id")
        originals = _rows(pg, source, "SELECT ref, blob, big, seen, code FROM typed ORDER BY id")
    finally:
        for name in (f"{source}_m", source):
            with server.connect() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert len(rows) == 500
    assert len({r[0] for r in rows}) == 500 and len({r[2] for r in rows}) == 500  # unique uuid and bigint
    for (ref, blob, big, seen, code, prefs, age), (o_ref, o_blob, o_big, o_seen, o_code) in zip(
            rows, originals, strict=True):
        assert isinstance(ref, uuid.UUID) and ref != o_ref
        assert isinstance(blob, bytes) and len(blob) == 32 and blob != o_blob
        assert isinstance(big, int) and 0 <= big < 2 ** 62 and big != o_big
        assert isinstance(seen, dt.datetime) and isinstance(o_seen, dt.datetime)
        assert abs(seen - o_seen) in (dt.timedelta(days=1), dt.timedelta(days=2))  # whole days, within maxDays
        assert isinstance(code, str) and len(code) == 10 and code != o_code  # the domain's CHECK held
        assert prefs == {"masked": True} and age is None
