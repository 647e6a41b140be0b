"""Copies from a standby: which of a DatabaseServer's replicas a Dump reads from, and how far behind it is.

A replica is used only when it answers as a standby (pg_is_in_recovery()) of the very server it is
listed under (same system identifier): a promoted former standby, or a host naming some other
cluster, never serves rows. With none usable the copy is not moved to the primary (that is the load
the replicas are there to keep off it): ReplicaUnavailable, which the branch retries, then fails on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import psycopg

from envbranch.postgres.errors import EngineError, ReplicaUnavailable
from envbranch.postgres.server import Server

# Zero when everything received is replayed (an idle primary sends nothing, and its last transaction's
# timestamp would only say how long it has been idle); else how old the last replayed transaction is.
REPLAY_LAG = """
SELECT CASE WHEN pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn()
            THEN 0
            ELSE pg_catalog.date_part('epoch', pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) END
"""
_IDENTITY = "SELECT system_identifier, pg_catalog.pg_is_in_recovery() FROM pg_catalog.pg_control_system()"


def replica_servers(primary: Server, replicas: Sequence[tuple[str, int]]) -> list[Server]:
    """The replicas as sessions: the primary's admin role, sslMode and TLS material, their own address."""
    return [dataclasses.replace(primary, host=host, port=port) for host, port in replicas]


def address(server: Server) -> str:
    return f"{server.host}:{server.port}"


def _identity(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, bool]:
    row = conn.execute(_IDENTITY).fetchone()
    assert row is not None
    return int(str(row[0])), bool(row[1])


def pick_replica(primary: Server, replicas: Sequence[Server], dbname: str) -> Server:
    """The first replica that is a standby of `primary` and holds `dbname`; why none is, otherwise."""
    with primary.connect() as conn:
        primary_id, _ = _identity(conn)
    refused: list[str] = []
    for replica in replicas:
        try:
            with replica.connect(dbname) as conn:
                system_id, in_recovery = _identity(conn)
        except EngineError as exc:
            refused.append(f"{address(replica)}: {exc.message}")
            continue
        if system_id != primary_id:
            refused.append(f"{address(replica)}: not a copy of {address(primary)} (another system identifier)")
        elif not in_recovery:
            refused.append(f"{address(replica)}: not a standby (pg_is_in_recovery() is false: promoted?)")
        else:
            return replica
    raise ReplicaUnavailable(f"no replica of {address(primary)} can serve the copy of {dbname} "
                             f"({'; '.join(refused)}); the primary is not used instead")


def replay_lag(conn: psycopg.Connection[tuple[object, ...]]) -> float | None:
    """Seconds the standby's replay is behind, measured on `conn` (a session on the standby)."""
    row = conn.execute(REPLAY_LAG).fetchone()
    return round(float(str(row[0])), 3) if row and row[0] is not None else None
