"""Writing a fresh copy to disk before its first use as a template.

A Dump leaves the new database's pages dirty in shared buffers and the kernel's cache. The first
`CREATE DATABASE … STRATEGY FILE_COPY` from it starts with an immediate checkpoint that writes them,
so the first branch of a freshly made or refreshed sealed snapshot would pay for the whole copy's
writes (1.4 s at 1.5 GB, against 0.15 s for the next one, on this project's bench machine). A
checkpoint right after the copy moves that cost to the snapshot's own (nightly) copy. It needs
superuser or membership of `pg_checkpoint` (PostgreSQL 15+); without either, nothing is done.
"""

from __future__ import annotations

import psycopg

from envbranch.postgres.server import Server

# CASE, not AND: the role pg_checkpoint does not exist before 15, and AND may evaluate either side first.
_MAY_CHECKPOINT = ("SELECT r.rolsuper OR CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 150000 "
                   "THEN pg_catalog.pg_has_role(r.oid, 'pg_checkpoint', 'MEMBER') ELSE false END "
                   "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user")


def _may_checkpoint(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(_MAY_CHECKPOINT).fetchone()
    return bool(row and row[0])


def may_checkpoint(server: Server) -> bool:
    with server.connect() as conn:
        return _may_checkpoint(conn)


def checkpoint_if_allowed(server: Server) -> bool:
    """Run CHECKPOINT when the admin role may (one session asks and runs it); whether it ran."""
    with server.connect() as conn:
        if not _may_checkpoint(conn):
            return False
        conn.execute("CHECKPOINT")
    return True
