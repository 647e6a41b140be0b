"""Clones keep every kind of object; Full keeps every row; System keeps none."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.rich_schema import admin_server, schema_dump, sequences, table_digest


def _uid() -> str:
    return str(uuid.uuid4())


def large_object_count(pg: Postgres, dbname: str) -> int:
    with pg.connect(dbname) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0])  # type: ignore[index,arg-type]


def large_objects(pg: Postgres, dbname: str) -> dict[int, bytes]:
    with pg.connect(dbname) as conn:
        return {int(oid): bytes(conn.execute("SELECT lo_get(%s)", (oid,)).fetchone()[0])  # type: ignore[index]
                for (oid,) in conn.execute("SELECT oid FROM pg_largeobject_metadata").fetchall()}


@pytest.mark.parametrize(("mode", "strategy", "expected"), [
    ("Full", "Template", "Template"), ("Full", "Dump", "Dump"), ("System", "Dump", "Dump"), ("System", "Auto", "Dump"),
    # Auto on an idle source on the same server: Template, the cheap copy.
    ("Full", "Auto", "Template"),
])
def test_clone_keeps_the_schema_and_the_rows_the_mode_asks_for(rich_source: tuple[Postgres, str], mode: str,
                                                                strategy: str, expected: str) -> None:
    pg, src = rich_source
    server = admin_server(pg)
    dst = f"clone_{mode}_{strategy}".lower()
    seen: list[int] = []
    # As the operator does it: the role first, the database born owned by it, then every object handed over.
    uid = str(uuid.uuid4())
    role = f"{dst}_owner"
    engine.create_owner_role(server, role, uid)
    result = engine.clone_database(server, src, server, dst, mode=mode, strategy=strategy,  # type: ignore[arg-type]
                                   uid=uid, progress=lambda step, pct: seen.append(pct), owner=role)
    try:
        engine.grant_ownership(server, dst, role)
        with pg.connect(dst) as conn:
            foreign = conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname IN ('public', 'billing') AND p.proowner <> %s::regrole "
                "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype IN ('e', 'i')) "
                "UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = 'billing' AND t.typowner <> %s::regrole "
                "UNION ALL SELECT o.oprname FROM pg_operator o WHERE o.oprnamespace = 'billing'::regnamespace "
                "AND o.oprowner <> %s::regrole "
                "UNION ALL SELECT pubname FROM pg_publication WHERE pubowner <> %s::regrole",
                (role, role, role, role)).fetchall()
        # Range and multirange types, operator, publication; a range's constructors belong to the type
        # (internal dependency) and are not handed over one by one: that is what failed every branch.
        assert foreign == []
        assert result.strategy == expected and result.bytes > 0 and seen[-1] == 100
        assert schema_dump(pg, dst) == schema_dump(pg, src)
        if mode == "Full":
            assert table_digest(pg, dst) == table_digest(pg, src)
            assert sequences(pg, dst) == sequences(pg, src)
            assert large_object_count(pg, dst) == 1
            assert large_objects(pg, dst) == large_objects(pg, src) == {424242: b"a large object"}
        else:
            # Large objects are data: a schema-only branch holds none, whatever the server version.
            assert large_object_count(pg, src) == 1 and large_object_count(pg, dst) == 0
            assert {count for count, _ in table_digest(pg, dst).values()} == {0}
            assert all(not is_called for _, is_called in sequences(pg, dst).values())
            with pg.connect(dst) as conn:
                assert conn.execute("SELECT nextval('ticket_numbers')").fetchone() == (1000,)
    finally:
        engine.drop_branch(server, dst, role, uid)


def test_busy_source_makes_template_wait_and_auto_fall_back(rich_source: tuple[Postgres, str]) -> None:
    pg, src = rich_source
    server = admin_server(pg)
    with pg.connect(src, autocommit=False) as busy:
        busy.execute("INSERT INTO \"café\" VALUES ('busy')")  # an open transaction on the source
        pid = busy.info.backend_pid
        with pytest.raises(engine.SourceBusy, match="other sessions"):
            engine.clone_database(server, src, server, "busy_template", mode="Full", strategy="Template", uid=_uid())
        # A sealed snapshot's only sessions are the operator's own: Auto waits for them, no Dump.
        with pytest.raises(engine.SourceBusy, match="other sessions"):
            engine.clone_database(server, src, server, "busy_waits", mode="Full", strategy="Auto", uid=_uid(),
                                  busy_source_waits=True)
        result = engine.clone_database(server, src, server, "busy_auto", mode="Full", strategy="Auto", uid=_uid())
        assert result.strategy == "Dump"
        with pg.connect() as conn:
            assert conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname IN ('busy_template', 'busy_waits')"
                                ).fetchone() == (0,)
        busy.rollback()
    engine.drop_database(server, "busy_auto")


def test_dump_while_the_source_takes_writes(rich_source: tuple[Postgres, str]) -> None:
    """The Dump reads every table on one snapshot. A writer commits, one transaction at a time, an
    `events` row and a `"MixedCase Table"` row carrying the same number: in the branch the written
    rows are contiguous, their count lies between the counts before and after the copy, and the two
    tables agree row for row (readers on different snapshots would disagree)."""
    pg, src = rich_source
    server = admin_server(pg)
    stop = threading.Event()
    offset = 1_000_000
    written = [0]

    def write() -> None:
        with pg.connect(src) as conn:
            while not stop.is_set():
                with conn.transaction():
                    row = conn.execute("INSERT INTO events (at, payload) VALUES ('2026-03-01', "
                                       "jsonb_build_object('writer', 1)) RETURNING id").fetchone()
                    conn.execute('INSERT INTO "MixedCase Table" VALUES (%s)', (offset + row[0],))  # type: ignore[index,operator]
                written[0] += 1

    def written_ids(dbname: str) -> tuple[list[int], list[int]]:
        with pg.connect(dbname) as conn:
            events = [int(r[0]) for r in conn.execute(  # type: ignore[call-overload]
                "SELECT id FROM events WHERE payload ? 'writer' ORDER BY id").fetchall()]
            mirrored = [int(r[0]) - offset for r in conn.execute(  # type: ignore[call-overload]
                'SELECT "Weird Column" FROM "MixedCase Table" WHERE "Weird Column" > %s ORDER BY 1',
                (offset,)).fetchall()]
        return events, mirrored

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: written[0] >= 20, timeout=30, what="the writer to be writing")
        before = len(written_ids(src)[0])
        result = engine.clone_database(server, src, server, "under_load", mode="Full", strategy="Dump", uid=_uid())
        after = len(written_ids(src)[0])
    finally:
        stop.set()
        writer.join()
    try:
        assert result.strategy == "Dump"
        events, mirrored = written_ids("under_load")
        assert before < after, "the source took no writes during the copy"
        assert before <= len(events) <= after
        assert events == list(range(events[0], events[0] + len(events)))  # contiguous: no committed row missed
        assert mirrored == events  # both tables read on the same snapshot
        with pg.connect("under_load") as conn:
            assert conn.execute("SELECT count(*) FROM people").fetchone() == (300,)
    finally:
        engine.drop_database(server, "under_load")


def test_dump_across_two_servers(rich_source: tuple[Postgres, str]) -> None:
    pg, src = rich_source
    with Postgres() as other:
        target = admin_server(other)
        result = engine.clone_database(admin_server(pg), src, target, "copied_over", mode="Full", strategy="Auto",
                                       uid=_uid())
        assert result.strategy == "Dump"
        assert table_digest(other, "copied_over") == table_digest(pg, src)


def test_a_failed_clone_leaves_no_database(rich_source: tuple[Postgres, str]) -> None:
    pg, _ = rich_source
    server = admin_server(pg)
    with pytest.raises(engine.EngineError):
        engine.clone_database(server, "no_such_db", server, "half_made", mode="Full", strategy="Dump", uid=_uid())
    with pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'half_made'").fetchone() is None
    with pytest.raises(psycopg.OperationalError):
        pg.connect("half_made")


def test_big_tables_copied_in_block_slices_lose_and_duplicate_nothing(rich_source: tuple[Postgres, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from envbranch.postgres import cloning

    monkeypatch.setattr(cloning, "SPLIT_BYTES", 1)  # every table is "big": each copied as block slices
    pg, src = rich_source
    server = admin_server(pg)
    engine.clone_database(server, src, server, "sliced", mode="Full", strategy="Dump", uid=_uid())
    try:
        assert table_digest(pg, "sliced") == table_digest(pg, src)
    finally:
        engine.drop_database(server, "sliced")
