"""Refresh in place: the names a refresh uses beside an environment's database, what of them exists,
and the swap: the current database's sessions ended and both renames in one transaction, so the
environment's name always holds exactly one database (the old one or the new one)."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from envbranch.postgres.errors import EngineError, NotOurs
from envbranch.postgres.names import MAX_IDENTIFIER_BYTES
from envbranch.postgres.server import Server
from envbranch.postgres.tags import Conn, database_uid

# Readable branch names never hold '___', hashed ones end in '___<hex>' or '_owner': these suffixes
# make names no environment's own database can have.
FRESH_SUFFIX = "___next"
PREVIOUS_SUFFIX = "___prev"
_HASH_LEN = 12
# The renames wait for sessions to end (PostgreSQL gives them 5 s each time): a session that
# reconnects in the moment between the terminate and the rename is ended again.
_SWAP_ATTEMPTS = 5


def beside(current: str, suffix: str) -> str:
    """A name next to `current` for a refresh's new copy or the old database until it is dropped."""
    name = f"{current}{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(current.encode()).hexdigest()[:_HASH_LEN]
    keep = MAX_IDENTIFIER_BYTES - len(suffix) - _HASH_LEN - 1
    return f"{current.encode()[:keep].decode(errors='ignore')}_{digest}{suffix}"


@dataclass(frozen=True)
class Found:
    """One database of a refresh as it is on the server: its OID, and whether it carries our tag."""

    oid: int
    ours: bool


def find(server: Server, names: tuple[str, ...], uid: str) -> dict[str, Found]:
    """Which of `names` exist, with their OIDs (stable across a rename: what tells the new copy after
    the swap from the old database under the same name)."""
    found: dict[str, Found] = {}
    with server.connect() as conn:
        for name in names:
            row = conn.execute("SELECT oid FROM pg_catalog.pg_database WHERE datname = %s", (name,)).fetchone()
            if row is not None:
                found[name] = Found(int(str(row[0])), database_uid(conn, name) == uid)
    return found


def _require_ours(conn: Conn, names: tuple[str, ...], uid: str) -> None:
    for name in names:
        if database_uid(conn, name) != uid:
            raise NotOurs(f"database {name} is not tagged as this environment's; not renaming it")


def _allow_connections(conn: Conn, dbname: str, allow: bool) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
        sql.Identifier(dbname), sql.Literal(allow)))


def _end_sessions(conn: Conn, names: tuple[str, ...]) -> int:
    # Client sessions that have a role: a non-superuser admin may not end an autovacuum worker (a
    # freshly loaded copy invites one) or a backend still authenticating ("permission denied to
    # terminate process"); the rename itself ends autovacuum workers, and a session that was still
    # authenticating is ended on the next attempt.
    rows = conn.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                        "WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid() "
                        "AND backend_type = 'client backend' AND usesysid IS NOT NULL",
                        (list(names),)).fetchall()
    return len(rows)


def swap(server: Server, current: str, fresh: str, previous: str, uid: str) -> float:
    """`current` becomes `previous` and `fresh` becomes `current`, in one transaction, after ending
    the sessions of both (new ones to `current` refused meanwhile). Returns how long the clients of
    `current` were cut off, in seconds."""
    with server.connect() as conn:
        _require_ours(conn, (current, fresh), uid)
        _allow_connections(conn, current, False)
        started = time.monotonic()
        try:
            attempt = 1
            while True:
                try:
                    _end_sessions(conn, (current, fresh))
                    with conn.transaction():
                        for old, new in ((current, previous), (fresh, current)):
                            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(old), sql.Identifier(new)))
                    return time.monotonic() - started
                # A session came back before the rename, or one changed state between the look and the
                # terminate (it began or ended authenticating): look again.
                except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege) as exc:
                    if attempt == _SWAP_ATTEMPTS or (isinstance(exc, psycopg.errors.InsufficientPrivilege)
                                                     and "terminate" not in str(exc)):
                        raise
                    attempt += 1
        except BaseException:
            with contextlib.suppress(EngineError):  # the next reconcile allows them again
                allow_connections(server, current)
            raise


def rename(server: Server, name: str, to: str, uid: str) -> None:
    """Give `name` (ours) the name `to`: a crash-recovery step when the environment's own name holds
    no database (never after an atomic swap, but a hand-made state is mended the same way)."""
    with server.connect() as conn:
        _require_ours(conn, (name,), uid)
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(to)))


def allow_connections(server: Server, dbname: str) -> None:
    """Undo a swap's refusal of new sessions (a swap that failed, or a crash in the middle of one)."""
    with server.connect() as conn:
        row = conn.execute("SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = %s",
                           (dbname,)).fetchone()
        if row is not None and not row[0]:
            _allow_connections(conn, dbname, True)
