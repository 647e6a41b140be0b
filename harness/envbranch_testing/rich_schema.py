"""A rich source database for the engine tests: every kind of object the design promises to keep, and the
checks that a copy of it kept them (schema, rows, sequences)."""

from __future__ import annotations

import re
import subprocess

from psycopg import sql

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres

RICH_SCHEMA = """
CREATE EXTENSION citext;
CREATE SCHEMA billing;
COMMENT ON SCHEMA billing IS 'money lives here';
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TYPE address AS (street text, city text);
CREATE TABLE people (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text NOT NULL DEFAULT 'anonymous',
    mood mood NOT NULL DEFAULT 'ok',
    home address,
    age positive_int,
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED
);
COMMENT ON TABLE people IS 'everyone';
COMMENT ON COLUMN people.email IS 'unique, case-insensitive';
CREATE INDEX people_name_lower ON people (lower(name));
CREATE INDEX people_happy ON people (id) WHERE mood = 'happy';
CREATE TABLE billing.invoices (
    id serial PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
    period tstzrange NOT NULL,
    EXCLUDE USING gist (period WITH &&)
);
CREATE TABLE events (id bigserial, at date NOT NULL, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE "MixedCase Table" ("Weird Column" int PRIMARY KEY);
CREATE TABLE "café" (naïve text);
CREATE VIEW happy_people AS SELECT id, email FROM people WHERE mood = 'happy';
CREATE RULE happy_people_no_delete AS ON DELETE TO happy_people DO INSTEAD NOTHING;
CREATE MATERIALIZED VIEW invoice_totals AS SELECT person_id, sum(amount) AS total FROM billing.invoices GROUP BY 1;
CREATE FUNCTION billing.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.amount := round(NEW.amount, 2); RETURN NEW; END $$;
CREATE TRIGGER invoices_touch BEFORE INSERT OR UPDATE ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.touch();
CREATE SEQUENCE ticket_numbers START 1000;
CREATE COLLATION billing.plain_sort (provider = libc, locale = 'C');
CREATE STATISTICS billing.invoice_stats (dependencies) ON person_id, amount FROM billing.invoices;
CREATE TEXT SEARCH DICTIONARY billing.simple_dict (TEMPLATE = pg_catalog.simple);
CREATE TEXT SEARCH CONFIGURATION billing.plain (COPY = pg_catalog.simple);
CREATE CONVERSION billing.to_latin1 FOR 'UTF8' TO 'LATIN1' FROM utf8_to_iso8859_1;
CREATE TYPE billing.price_band AS RANGE (subtype = numeric);
CREATE TABLE billing.bands (id int PRIMARY KEY, band billing.price_band, bands billing.price_band_multirange);
CREATE FUNCTION billing.same_cents(numeric, numeric) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS 'SELECT round($1, 2) = round($2, 2)';
CREATE OPERATOR billing.=~= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = billing.same_cents);
CREATE PUBLICATION invoices_pub FOR TABLE billing.invoices;
INSERT INTO people (email, name, mood, home, age)
    SELECT 'p' || i || '@x.org', 'person ' || i, (ARRAY['sad','ok','happy']::mood[])[1 + i % 3],
           ROW('street ' || i, 'city')::address, 1 + i % 90 FROM generate_series(1, 300) i;
INSERT INTO billing.invoices (person_id, amount, period)
    SELECT i, i * 1.5, tstzrange(timestamptz '2026-01-01' + i * interval '1 day',
                                 timestamptz '2026-01-01' + (i + 1) * interval '1 day') FROM generate_series(1, 300) i;
INSERT INTO events (at, payload)
    SELECT date '2025-06-01' + i, jsonb_build_object('i', i) FROM generate_series(1, 400) i;
INSERT INTO "MixedCase Table" SELECT generate_series(1, 10);
INSERT INTO "café" VALUES ('crème'), ('brûlée');
INSERT INTO billing.bands SELECT i, billing.price_band(i, i + 10),
    billing.price_band_multirange(billing.price_band(i, i + 1), billing.price_band(i + 5, i + 6))
    FROM generate_series(1, 50) i;
SELECT nextval('ticket_numbers') FROM generate_series(1, 7);
SELECT lo_from_bytea(424242, 'a large object'::bytea);
REFRESH MATERIALIZED VIEW invoice_totals;
"""

TABLES = ["people", "billing.invoices", "events_2025", "events_2026", '"MixedCase Table"', '"café"', "billing.bands"]


def admin_server(pg: Postgres) -> engine.Server:
    return engine.Server(pg.host, pg.port, pg.admin.user, pg.admin.password, clone_support=pg.clone_support)


def schema_dump(pg: Postgres, dbname: str) -> str:
    tools = pg.client_tools()
    out = subprocess.run([tools.path("pg_dump"), "--schema-only", "--no-owner", "--no-privileges", "-d", dbname],
                         env={"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.superuser.user,
                              "PGPASSWORD": pg.superuser.password}, capture_output=True, text=True, check=True)
    # pg_dump 18 brackets its output with a random \restrict key.
    return re.sub(r"^\\(un)?restrict .*$", "", out.stdout, flags=re.M)


def table_digest(pg: Postgres, dbname: str) -> dict[str, tuple[int, str]]:
    """Each table's row count and the md5 of its rows in order."""
    digest: dict[str, tuple[int, str]] = {}
    with pg.connect(dbname) as conn:
        for table in TABLES:
            row = conn.execute(sql.SQL("SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') "
                                       "FROM {} x").format(sql.SQL(table))).fetchone()
            assert row is not None
            digest[table] = (int(str(row[0])), str(row[1]))
    return digest


def sequences(pg: Postgres, dbname: str) -> dict[str, tuple[object, ...]]:
    with pg.connect(dbname) as conn:
        names = [str(r[0]) for r in conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1").fetchall()]
        return {n: tuple(conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(n))).fetchone()
                         or ()) for n in names}


def sequences_not_behind(pg: Postgres, src: str, dst: str) -> None:
    """A copy read from a standby: each sequence is where the primary's is, or ahead of it (a standby
    sees a sequence as its WAL logged it, up to 32 values ahead): never behind, so no value repeats."""
    source, copy = sequences(pg, src), sequences(pg, dst)
    assert source.keys() == copy.keys()
    for name, (last, called) in source.items():
        copied, copied_called = int(str(copy[name][0])), bool(copy[name][1])
        assert copied > int(str(last)) or (copied == int(str(last)) and copied_called >= bool(called)), (
            name, source[name], copy[name])


def assert_same_copy(pg: Postgres, src: str, dst: str, *, from_standby: bool = False) -> None:
    """`dst` holds `src`'s schema, rows and sequences (read on a standby: sequences not behind)."""
    assert schema_dump(pg, dst) == schema_dump(pg, src)
    assert table_digest(pg, dst) == table_digest(pg, src)
    if from_standby:
        sequences_not_behind(pg, src, dst)
    else:
        assert sequences(pg, dst) == sequences(pg, src)
