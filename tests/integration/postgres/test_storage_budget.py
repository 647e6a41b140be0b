"""Never fill production's disk: a copy that does not fit the DatabaseServer's budget is refused before
anything is made, and a copy that still runs the disk full is rolled back at once, production's writes
going on right after."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbranch import postgres as engine
from envbranch.postgres import storage
from envbranch_testing.loopfs import loop_filesystem, loop_unavailable
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import admin_server

DISK_BYTES = 128 * 1024**2
BIG_ROWS = 300_000  # ~72 MB of rows: the source fits the small disk once, not twice


def _database_names(pg: Postgres) -> set[str]:
    with pg.connect() as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


@pytest.fixture
def production_on_a_small_disk() -> Iterator[Postgres]:
    """A server whose data directory is a 128 MB ext4 file system, holding `prod` (~72 MB). pg_wal is
    elsewhere, as on most production servers: a full WAL disk stops PostgreSQL whatever a copy does."""
    if reason := loop_unavailable("mkfs.ext4"):
        pytest.skip(f"no small disk can be made here: {reason}")
    # Everything the check allowed must now work: a failure from here on fails the test. pg_wal is not
    # under pytest's tmp_path: every pytest run makes pytest-of-<user> private again (0700), and the
    # server's user must reach it.
    wal = Path(tempfile.mkdtemp(prefix="envbranch-wal-"))
    try:
        with loop_filesystem(DISK_BYTES, ["mkfs.ext4", "-q", "-F", "-m", "0"]) as mnt, \
                Postgres(base_dir=mnt / "pg", wal_dir=wal / "pg_wal") as pg:
            with pg.connect(role=pg.admin) as conn:
                conn.execute("CREATE DATABASE prod")
            with pg.connect("prod", role=pg.admin) as conn:
                conn.execute("CREATE TABLE big AS SELECT i, repeat('x', 200) AS filler "
                             "FROM generate_series(1, %s) i", (BIG_ROWS,))
                conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
            with pg.connect() as conn:
                conn.execute("CHECKPOINT")  # production's pages on disk, as after any checkpoint
            yield pg
    finally:
        shutil.rmtree(wal, ignore_errors=True)


@pytest.mark.parametrize("options", [
    # The big table in two block slices loading side by side into one file, reader and writer joined by
    # a pipe (the default); and a paced copy, its bytes relayed through the operator to a writer that dies.
    engine.DumpOptions(), engine.DumpOptions(streams=3, max_rate=256 * 1024**2)], ids=["default", "paced"])
def test_a_copy_that_fills_the_disk_is_rolled_back_at_once(production_on_a_small_disk: Postgres,
                                                           options: engine.DumpOptions) -> None:
    pg = production_on_a_small_disk
    server = admin_server(pg)
    before = _database_names(pg)
    with pytest.raises(engine.DiskFull) as full:
        engine.clone_database(server, "prod", server, "branch", mode="Full", strategy="Dump", uid=str(uuid.uuid4()),
                              options=options)
    assert not full.value.transient and "No space left on device" in full.value.message
    # Right away, no retry and no cleanup by hand: production takes writes, the partial copy is gone.
    with pg.connect("prod", role=pg.admin) as conn:
        conn.execute("INSERT INTO orders (note) SELECT 'after the failed branch ' || i FROM generate_series(1, 5000) i")
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (5000,)
    assert _database_names(pg) == before
    assert [t for t in engine.find_tagged(server) if t.kind == "database"] == []


def test_a_copy_over_the_budget_is_refused_before_anything_is_made(production_on_a_small_disk: Postgres) -> None:
    pg = production_on_a_small_disk
    server = admin_server(pg)
    prod_bytes = storage.expected_copy_bytes(server, "prod", "Full")
    assert prod_bytes > BIG_ROWS * 200
    budget = engine.Budget(budget_bytes=prod_bytes + 64 * 1024**2, reserve_bytes=16 * 1024**2)
    room = engine.require_room(server, server, "prod", "System", budget)  # a schema-only copy fits
    assert room is not None and room.used == 0 and room.fits
    # A first branch (System: small) is counted by its tag; the Full copy then no longer fits.
    uid = str(uuid.uuid4())
    engine.clone_database(server, "prod", server, "schema_branch", mode="System", strategy="Dump", uid=uid)
    try:
        assert storage.tagged_bytes(server) > 0
        with pytest.raises(engine.InsufficientStorage, match="does not fit") as refused:
            engine.require_room(server, server, "prod", "Full", engine.Budget(prod_bytes + 1024, 0))
        assert "MiB" in refused.value.message and not refused.value.transient
        assert engine.require_room(server, server, "prod", "Full", None) is None  # no budget: no check
    finally:
        engine.drop_database(server, "schema_branch", uid)
