"""A source database full of personal data, for the masking tests and the bench: e-mails under a
domain and a unique index, a foreign key and a CHECK on masked columns, domains over masked types."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from psycopg import sql

from envbranch_testing.postgres import Postgres

PERSONAL_SCHEMA = r"""
CREATE DOMAIN email_address AS text CHECK (VALUE ~ '^[^@\s]+@[^@\s]+\.[a-z]+$');
CREATE DOMAIN phone_number AS varchar(20) CHECK (VALUE ~ '^\+?[0-9 ()-]{7,20}$');
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email email_address NOT NULL UNIQUE,
    full_name varchar(60) NOT NULL,
    phone phone_number,
    birth_date date CHECK (birth_date > date '1900-01-01'),
    card_number varchar(19) CHECK (length(card_number) BETWEEN 12 AND 19),
    iban text,
    last_login_ip inet,
    api_token text,
    country text NOT NULL,
    CHECK (email LIKE '%@%')
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_email email_address NOT NULL REFERENCES customers (email),
    placed_on date NOT NULL,
    total_cents integer NOT NULL
);
CREATE TABLE newsletter (email text PRIMARY KEY, signed_up timestamptz NOT NULL);
CREATE TABLE visits (id bigint, at date NOT NULL, visitor_email text NOT NULL, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE visits_2025 PARTITION OF visits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""


def fill_sql(rows: int) -> str:
    """`rows` customers, two orders each, every third one on the newsletter."""
    return f"""
INSERT INTO customers
SELECT i, 'customer' || i || '@realmail.org', 'Realname' || i || ' Realsurname',
       '+49 30 ' || (1000000 + i), date '1960-01-01' + i % 15000, '4111 1111 ' || lpad(i::text, 9, '0'),
       'DE89370400440532' || lpad(i::text, 6, '0'), ('10.' || i % 250 || '.' || i % 200 || '.7')::inet,
       'tok_' || md5(i::text), (ARRAY['DE', 'FR', 'NL'])[1 + i % 3]
FROM generate_series(1, {rows}) i;
INSERT INTO orders SELECT j, 'customer' || (1 + j % {rows}) || '@realmail.org', date '2026-01-01' + j % 300, j
FROM generate_series(1, {2 * rows}) j;
INSERT INTO newsletter SELECT 'customer' || i || '@realmail.org', timestamptz '2025-01-01' + i * interval '1 hour'
FROM generate_series(1, {rows}, 3) i;
INSERT INTO visits SELECT i, date '2025-06-01' + i % 400, 'customer' || i || '@realmail.org'
FROM generate_series(1, {rows}) i;
"""


def sample_values(rows: int) -> list[str]:
    """Original values of a few customers: none may be found anywhere in a masked branch."""
    picks = sorted({1, 2, rows // 2, rows})
    return [v for i in picks for v in (f"customer{i}@realmail.org", f"Realname{i} Realsurname",
                                       f"+49 30 {1000000 + i}", f"DE89370400440532{i:06d}",
                                       "tok_" + hashlib.md5(str(i).encode()).hexdigest())]  # noqa: S324


# The policy's spec: every personal column covered, country classified as not personal.
POLICY_RULES: list[dict[str, Any]] = [
    {"table": "customers", "column": "email", "function": "Email"},
    {"table": "orders", "column": "customer_email", "function": "Email"},
    {"table": "newsletter", "column": "email", "function": "Email"},
    {"table": "visits", "column": "visitor_email", "function": "Email"},   # the partitioned table: both partitions
    {"table": "customers", "column": "full_name", "function": "PersonName"},
    {"table": "customers", "column": "phone", "function": "Phone"},
    {"table": "customers", "column": "birth_date", "function": "DateShift", "maxDays": 30},
    {"table": "customers", "column": "card_number", "function": "Partial", "keep": 4},
    {"table": "customers", "column": "iban", "function": "Hash"},
    {"table": "customers", "column": "last_login_ip", "function": "Null"},
    {"table": "customers", "column": "api_token", "function": "Constant", "value": "redacted"},
]


def policy_spec(secret: str) -> dict[str, Any]:
    return {"keySecretRef": {"name": secret}, "rules": POLICY_RULES, "notPersonal": ["customers.country"]}


def found_in_tables(pg: Postgres, dbname: str, samples: list[str]) -> list[str]:
    """The samples found in any row of any table of `dbname` (each row as text)."""
    with pg.connect(dbname) as conn:
        tables = [sql.Identifier(str(r[0]), str(r[1])) for r in conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall()]
        text = "\n".join(str(row[0]) for t in tables
                         for row in conn.execute(sql.SQL("SELECT x::text FROM {} x").format(t)).fetchall())
    assert text, f"{dbname} holds no rows"
    return [s for s in samples if s in text]


def found_on_disk(pg: Postgres, dbname: str, samples: list[str]) -> list[str]:
    """The samples found in the files of `dbname` (base/<oid>/, after a checkpoint wrote every page)."""
    with pg.connect() as conn:
        conn.execute("CHECKPOINT")
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    assert oid is not None
    files = [p for p in (pg.data_dir / "base" / str(oid[0])).iterdir() if p.is_file()]
    data = b"".join(p.read_bytes() for p in files)
    assert len(data) > 1_000_000, "the database's files were not read"
    return [s for s in samples if s.encode() in data]


def key_traces(key: bytes) -> list[str]:
    """Every form the masking key (or the HMAC pads derived from it) could be written in."""
    from envbranch.postgres.masking import Masking

    ipad, opad = Masking("p", key, {}).pads()
    return [key.decode(), key.hex(), base64.b64encode(key).decode(), ipad.hex(), opad.hex()]
