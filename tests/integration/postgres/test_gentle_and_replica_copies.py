"""Gentle copies (a byte-rate cap shared by the streams, a stream count) and copies read from a real
streaming standby (pg_basebackup -R) keep every object and row; the primary does no copy work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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
