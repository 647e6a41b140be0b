"""The replica check the DatabaseServer probe reports and pick_replica relies on, against real servers:
a streaming standby (pg_basebackup -R) is usable and its replay lag measured; another primary that
takes the same login, the primary itself, an address nothing listens on and a login refused are not
usable, each with its reason; the admin password is in no message. On every installed version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch.postgres import replicas
from envbranch_testing.postgres import Postgres, Standby, available_majors
from envbranch_testing.processes import free_port, wait_until
from envbranch_testing.rich_schema import admin_server


@pytest.fixture(scope="module", params=available_majors(), ids=lambda m: f"pg{m}")
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[Postgres, Standby, Postgres]]:
    """A primary, a hot standby of it, and another primary whose admin role has the same password."""
    with Postgres(major=request.param) as primary, Standby(primary) as standby, \
            Postgres(major=request.param) as stranger:
        with stranger.connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(primary.admin.user), sql.Literal(primary.admin.password)))
        wait_until(standby.caught_up, timeout=60, what="the standby to catch up")
        yield primary, standby, stranger


def _check(primary: Postgres, *addresses: tuple[str, int]) -> list[engine.ReplicaCheck]:
    server = admin_server(primary)
    return engine.check_replicas(server, engine.replica_servers(server, list(addresses)))


def test_each_listed_replica_gets_its_reason_in_order(servers: tuple[Postgres, Standby, Postgres]) -> None:
    primary, standby, stranger = servers
    dead = (primary.host, free_port())
    checks = _check(primary, (standby.host, standby.port), (stranger.host, stranger.port), dead,
                    (primary.host, primary.port))
    assert [c.address for c in checks] == [f"{standby.host}:{standby.port}", f"{stranger.host}:{stranger.port}",
                                           f"{dead[0]}:{dead[1]}", f"{primary.host}:{primary.port}"]
    assert [(c.usable, c.reason) for c in checks] == [(True, "Usable"), (False, "NotACopy"),
                                                      (False, "Unreachable"), (False, "NotAStandby")]
    usable, stranger_check, dead_check, itself = checks
    assert usable.replay_lag_seconds is not None and usable.replay_lag_seconds >= 0
    assert "not a copy" in stranger_check.message and stranger_check.replay_lag_seconds is None
    assert "Connection refused" in dead_check.message or "could not connect" in dead_check.message
    assert "not a standby" in itself.message
    for check in checks:
        assert primary.admin.password not in check.message


def test_a_login_the_replica_refuses_is_named_without_the_password(
        servers: tuple[Postgres, Standby, Postgres]) -> None:
    primary, _, _ = servers
    with Postgres(major=str(primary.major)) as other:  # its admin role has another password
        [check] = _check(primary, (other.host, other.port))
    assert (check.usable, check.reason) == (False, "Refused")
    assert "password authentication failed" in check.message
    assert primary.admin.password not in check.message


def _on_standby(standby: Standby, query: str) -> bool:
    with standby.connect() as conn:
        return bool(conn.execute(query).fetchone()[0])  # type: ignore[index]


def test_a_standby_whose_replay_is_paused_reports_how_far_behind_it_is(
        servers: tuple[Postgres, Standby, Postgres]) -> None:
    primary, standby, _ = servers
    with primary.connect() as conn:  # a transaction replayed: the lag is measured from its commit time
        conn.execute("CREATE TABLE written (id int)")
    wait_until(lambda: _on_standby(standby, "SELECT pg_catalog.to_regclass('written') IS NOT NULL"), timeout=60,
               what="the standby to replay the table")
    with standby.connect() as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with primary.connect() as conn:
            conn.execute("INSERT INTO written VALUES (1)")
        wait_until(lambda: _on_standby(standby, "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"),
                   timeout=60, what="the standby to receive a write it does not replay")
        [check] = _check(primary, (standby.host, standby.port))
        assert check.usable and check.replay_lag_seconds is not None and check.replay_lag_seconds > 0
    finally:
        with standby.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    # Replayed again, the lag is back to zero (waited for: the primary's own background records come and go).
    wait_until(lambda: _check(primary, (standby.host, standby.port))[0].replay_lag_seconds == 0, timeout=60,
               what="the standby's lag to return to zero")


def test_pick_replica_takes_the_first_usable_one_through_the_same_check(
        servers: tuple[Postgres, Standby, Postgres]) -> None:
    primary, standby, stranger = servers
    server = admin_server(primary)
    listed = engine.replica_servers(server, [(stranger.host, stranger.port), (primary.host, free_port()),
                                             (standby.host, standby.port)])
    assert replicas.pick_replica(server, listed, "postgres") == listed[2]
    with pytest.raises(engine.ReplicaUnavailable) as refused:
        replicas.pick_replica(server, listed[:2], "postgres")
    assert "not a copy" in refused.value.message and primary.admin.password not in refused.value.message
