"""Gentle copies (a byte-rate cap shared by the streams, a stream count) and copies read from a real
streaming standby (pg_basebackup -R) keep every object and row; the primary does no copy work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from envbranch import postgres as engine
from envbranch.postgres import cloning
from envbranch_testing.postgres import Postgres, Standby
from envbranch_testing.processes import free_port, wait_until
from envbranch_testing.rich_schema import RICH_SCHEMA, admin_server, assert_same_copy

RATE = 1024 * 1024  # the floor users may ask for: the slowest gentle copy


@pytest.fixture(scope="module")
def primary_and_standby() -> Iterator[tuple[Postgres, Standby]]:
    """A primary holding `rich`, and a hot standby of it that has replayed it."""
    with Postgres() as primary:
        with primary.connect(role=primary.admin) as conn:
            conn.execute("CREATE DATABASE rich")
        with primary.connect("rich", role=primary.admin) as conn:
            conn.execute(RICH_SCHEMA)
        with Standby(primary) as standby:
            wait_until(standby.caught_up, timeout=60, what="the standby to replay the rich database")
            yield primary, standby


def _clone(pg: Postgres, dst: str, options: engine.DumpOptions, source: Postgres | None = None) -> engine.CloneResult:
    server = admin_server(pg)
    return engine.clone_database(admin_server(source or pg), "rich", server, dst, mode="Full", strategy="Dump",
                                 uid=str(uuid.uuid4()), options=options)


@pytest.mark.parametrize("streams", [1, 3])
@pytest.mark.parametrize("path", ["psql-streams", "small-tables"])
def test_a_gentle_copy_keeps_every_object_and_row(primary_and_standby: tuple[Postgres, Standby], streams: int,
                                                  path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pg, _ = primary_and_standby
    if path == "psql-streams":
        # Every table through the paced relay between two psql processes, the big ones in slices.
        monkeypatch.setattr(cloning, "SMALL_BYTES", 0)
        monkeypatch.setattr(cloning, "SPLIT_BYTES", 1)
    dst = f"gentle_{streams}_{path.replace('-', '_')}"
    result = _clone(pg, dst, engine.DumpOptions(streams=streams, max_rate=RATE))
    try:
        assert result.strategy == "Dump" and result.rows_from == f"{pg.host}:{pg.port}"
        assert result.replica_lag_seconds is None
        assert_same_copy(pg, "rich", dst)
    finally:
        engine.drop_database(admin_server(pg), dst)


def test_the_primary_counts_the_sessions_a_copy_opens(primary_and_standby: tuple[Postgres, Standby]) -> None:
    """The measure the replica test relies on does see a Dump that reads from the primary."""
    pg, _ = primary_and_standby
    before = pg.sessions_opened("rich")
    _clone(pg, "from_primary", engine.DumpOptions())
    engine.drop_database(admin_server(pg), "from_primary")
    assert pg.sessions_opened("rich") - before >= 3  # the snapshot session, pg_dump twice, readers: + marker


def test_a_replica_copy_reads_the_standby_and_leaves_the_primary_alone(
        primary_and_standby: tuple[Postgres, Standby]) -> None:
    pg, standby = primary_and_standby
    replica = engine.replica_servers(admin_server(pg), [(standby.host, standby.port)])
    on_primary, on_standby = pg.sessions_opened("rich"), standby.sessions_opened("rich")
    result = _clone(pg, "from_replica", engine.DumpOptions(replicas=tuple(replica), max_rate=4 * RATE))
    try:
        assert result.rows_from == f"{standby.host}:{standby.port}"
        assert result.replica_lag_seconds is not None and result.replica_lag_seconds >= 0
        # Only our marker opened the source database on the primary; on the standby the copy did.
        assert pg.sessions_opened("rich") == on_primary + 1
        assert standby.sessions_opened("rich") - on_standby >= 4
        assert_same_copy(pg, "rich", "from_replica", from_standby=True)
    finally:
        engine.drop_database(admin_server(pg), "from_replica")


def test_a_replica_that_is_not_a_standby_or_not_reachable_is_never_used(
        primary_and_standby: tuple[Postgres, Standby]) -> None:
    pg, _ = primary_and_standby
    with Postgres() as stranger:
        listed = engine.replica_servers(admin_server(pg), [(pg.host, pg.port), (pg.host, free_port()),
                                                           (stranger.host, stranger.port)])
        # The stranger has other passwords: it answers with an authentication error, also named.
        with pytest.raises(engine.ReplicaUnavailable) as refused:
            _clone(pg, "never_made", engine.DumpOptions(replicas=tuple(listed)))
    message = refused.value.message
    assert "not a standby" in message and "the primary is not used instead" in message
    assert pg.admin.password not in message
    assert refused.value.transient
    with pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'never_made'").fetchone() is None


def _snapshot_holders(pg: Postgres, dbname: str) -> int:
    """Client sessions on `dbname` (this one aside) whose snapshot holds back the server's vacuum."""
    with pg.connect(dbname, role=pg.admin) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_xmin IS NOT NULL "
                           "AND backend_type = 'client backend' AND pid <> pg_backend_pid()", (dbname,)).fetchone()
    return int(row[0]) if row else -1


@pytest.mark.parametrize("streams", [1, 3])
def test_a_spooled_copy_holds_the_snapshot_only_while_it_reads(
        primary_and_standby: tuple[Postgres, Standby], streams: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pg, _ = primary_and_standby
    monkeypatch.setattr(cloning, "SPLIT_BYTES", 1)  # the big tables in slices too, each a file of its own
    seen: dict[str, object] = {}

    def progress(step: str, percent: int) -> None:
        # Read phase: 10-45 %. Load phase (from the spool, at the cap): 50-90 %.
        if step == "data" and percent < 50 and "reading" not in seen:
            seen["reading"] = _snapshot_holders(pg, "rich")
        if step == "data" and percent >= 50 and "loading" not in seen:
            seen["loading"] = _snapshot_holders(pg, "rich")
            seen["files"] = sorted(f.stat().st_mode & 0o777 for f in tmp_path.rglob("*.copy"))

    dst = f"spooled_{streams}"
    result = engine.clone_database(admin_server(pg), "rich", admin_server(pg), dst, mode="Full", strategy="Dump",
                                   uid=str(uuid.uuid4()), progress=progress,
                                   options=engine.DumpOptions(streams=streams, max_rate=RATE,
                                                              spool=engine.Spool(str(tmp_path))))
    try:
        assert result.strategy == "Dump" and result.spooled is True
        assert result.snapshot_seconds is not None and result.snapshot_seconds < result.seconds
        assert cast(int, seen["reading"]) >= 1, seen  # the exported snapshot, while the rows are read
        assert seen["loading"] == 0, seen   # ended before the first load: vacuum goes on
        files = cast(list[int], seen["files"])
        assert files and set(files) == {0o600}, seen  # the rows on disk: the operator's user only
        assert list(tmp_path.iterdir()) == []  # every spool file (and their directory) removed
        assert_same_copy(pg, "rich", dst)
    finally:
        engine.drop_database(admin_server(pg), dst)


def test_a_spool_without_room_streams_the_copy_at_the_cap(
        primary_and_standby: tuple[Postgres, Standby], tmp_path: Path) -> None:
    pg, _ = primary_and_standby
    seen: list[int] = []

    def progress(step: str, percent: int) -> None:
        if step == "data" and not seen:
            seen.append(_snapshot_holders(pg, "rich"))

    # The spool's limit (an emptyDir's sizeLimit) is below the tables' size, its disk has room.
    result = engine.clone_database(admin_server(pg), "rich", admin_server(pg), "unspooled", mode="Full",
                                   strategy="Dump", uid=str(uuid.uuid4()), progress=progress,
                                   options=engine.DumpOptions(streams=1, max_rate=RATE,
                                                              spool=engine.Spool(str(tmp_path), limit=1024)))
    try:
        assert result.spooled is False
        assert list(tmp_path.iterdir()) == []  # nothing was written there
        assert seen[0] >= 1  # streamed: the snapshot is held while the rows are written
        assert_same_copy(pg, "rich", "unspooled")
    finally:
        engine.drop_database(admin_server(pg), "unspooled")
