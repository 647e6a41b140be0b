"""Copies from a standby: which of a DatabaseServer's replicas a Dump reads from, and how far behind it is.

A replica is used only when it answers as a standby (pg_is_in_recovery()) of the very server it is
listed under (same system identifier): a promoted former standby, or a host naming some other
cluster, never serves rows. With none usable the copy is not moved to the primary (that is the load
the replicas are there to keep off it): ReplicaUnavailable, which the branch retries, then fails on.
The DatabaseServer probe runs the same check on every listed replica (`check_replicas`), so its status
says beforehand what a copy would find.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg

from envbranch.postgres.errors import EngineError, ReplicaUnavailable, TlsError
from envbranch.postgres.server import Server

# Zero when everything received is replayed (an idle primary sends nothing, and its last transaction's
# timestamp would only say how long it has been idle); else how old the last replayed transaction is.
REPLAY_LAG = """
SELECT CASE WHEN pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn()
            THEN 0
            ELSE pg_catalog.date_part('epoch', pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) END
"""
_IDENTITY = "SELECT system_identifier, pg_catalog.pg_is_in_recovery() FROM pg_catalog.pg_control_system()"

# Why a replica is (not) usable: the `reason` of a ReplicaCheck.
USABLE, UNREACHABLE, TLS_FAILED, REFUSED = "Usable", "Unreachable", "TLSFailed", "Refused"
NOT_A_COPY, NOT_A_STANDBY = "NotACopy", "NotAStandby"


@dataclasses.dataclass(frozen=True)
class ReplicaCheck:
    """One listed replica as a copy would find it. `message` is scrubbed of the admin password."""

    address: str                             # host:port
    usable: bool
    reason: str                              # USABLE, UNREACHABLE, TLS_FAILED, REFUSED, NOT_A_COPY, NOT_A_STANDBY
    message: str
    replay_lag_seconds: float | None = None  # measured when usable


def replica_servers(primary: Server, replicas: Sequence[tuple[str, int]]) -> list[Server]:
    """The replicas as sessions: the primary's admin role, sslMode and TLS material, their own address."""
    return [dataclasses.replace(primary, host=host, port=port) for host, port in replicas]


def address(server: Server) -> str:
    return f"{server.host}:{server.port}"


def _identity(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, bool]:
    row = conn.execute(_IDENTITY).fetchone()
    assert row is not None
    return int(str(row[0])), bool(row[1])


def system_identifier(primary: Server) -> int:
    with primary.connect() as conn:
        return _identity(conn)[0]


def check_replica(primary: Server, primary_id: int, replica: Server, dbname: str | None = None) -> ReplicaCheck:
    """Whether `replica` is a standby of `primary` (system identifier `primary_id`) that the admin role
    reaches in `dbname` (default: its maintenance database), with its replay lag when it is."""
    where = address(replica)
    try:
        with replica.connect(dbname) as conn:
            system_id, in_recovery = _identity(conn)
            lag = replay_lag(conn) if system_id == primary_id and in_recovery else None
    except EngineError as exc:
        reason = TLS_FAILED if isinstance(exc, TlsError) else UNREACHABLE if exc.transient else REFUSED
        return ReplicaCheck(where, False, reason, exc.message)
    if system_id != primary_id:
        return ReplicaCheck(where, False, NOT_A_COPY,
                            f"not a copy of {address(primary)} (another system identifier)")
    if not in_recovery:
        return ReplicaCheck(where, False, NOT_A_STANDBY, "not a standby (pg_is_in_recovery() is false: promoted?)")
    return ReplicaCheck(where, True, USABLE, f"standby of {address(primary)}", lag)


def check_replicas(primary: Server, replicas: Sequence[Server]) -> list[ReplicaCheck]:
    """Every listed replica checked, in the listed order (at once: a silent address waits out its
    connect timeout). Raises the primary's EngineError when the primary cannot be read."""
    if not replicas:
        return []
    primary_id = system_identifier(primary)
    with ThreadPoolExecutor(max_workers=len(replicas), thread_name_prefix="replica-check") as pool:
        return list(pool.map(lambda replica: check_replica(primary, primary_id, replica), replicas))


def pick_replica(primary: Server, replicas: Sequence[Server], dbname: str) -> Server:
    """The first replica that is a standby of `primary` and holds `dbname`; why none is, otherwise."""
    primary_id = system_identifier(primary)
    refused: list[str] = []
    for replica in replicas:
        check = check_replica(primary, primary_id, replica, dbname)
        if check.usable:
            return replica
        refused.append(f"{check.address}: {check.message}")
    raise ReplicaUnavailable(f"no replica of {address(primary)} can serve the copy of {dbname} "
                             f"({'; '.join(refused)}); the primary is not used instead")


def replay_lag(conn: psycopg.Connection[tuple[object, ...]]) -> float | None:
    """Seconds the standby's replay is behind, measured on `conn` (a session on the standby)."""
    row = conn.execute(REPLAY_LAG).fetchone()
    return round(float(str(row[0])), 3) if row and row[0] is not None else None
