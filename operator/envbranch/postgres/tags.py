"""Tags (a comment carrying the Environment UID) on branch databases and roles, the orphan lookup,
and dropping what a branch created."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from envbranch.postgres.errors import NotOurs, PermanentError, TransientError
from envbranch.postgres.server import Server

TAG_PREFIX = "envbranch:uid="
_TAG = re.compile(r"^envbranch:uid=([0-9a-fA-F-]{1,64})(?:;cluster=([0-9a-fA-F-]{1,64}))?$")


def tag_for(uid: str, cluster: str | None) -> str:
    """The comment naming `uid`, and the cluster it belongs to (Server.cluster) when there is one."""
    return f"{TAG_PREFIX}{uid}" + (f";cluster={cluster}" if cluster else "")


@dataclass(frozen=True)
class Tagged:
    kind: str   # "database" or "role"
    name: str
    uid: str
    cluster: str | None = None

    def foreign_to(self, cluster: str | None) -> bool:
        """Tagged by another cluster's operator than `cluster`'s: not ours to judge an orphan."""
        return self.cluster is not None and cluster is not None and self.cluster != cluster


Conn = psycopg.Connection[tuple[object, ...]]


def tag_database(conn: Conn, dbname: str, uid: str, cluster: str | None) -> None:
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(dbname),
                                                                sql.Literal(tag_for(uid, cluster))))


def tag_role(conn: Conn, role: str, uid: str, cluster: str | None) -> None:
    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(tag_for(uid, cluster))))


def _parse(comment: object) -> tuple[str, str | None] | None:
    m = _TAG.match(str(comment or ""))
    return (m.group(1), m.group(2)) if m else None


def _uid(comment: object) -> str | None:
    parsed = _parse(comment)
    return parsed[0] if parsed else None


# DROP DATABASE ... WITH (FORCE) by a non-superuser is refused (42501, "permission denied to terminate
# process"; PostgreSQL 15: "must be a superuser to terminate superuser process") while a backend in the
# database has no role yet or a superuser's is still exiting: an autovacuum worker (a freshly loaded
# copy invites one), a connection still authenticating or just closed. Such a backend lives for moments.
_DROP_ATTEMPTS = 10
_DROP_PAUSE_S = 0.5


def drop_forced(conn: Conn, dbname: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE), tried again while a roleless backend is in the way."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
    for attempt in range(_DROP_ATTEMPTS):
        try:
            conn.execute(statement)
            return
        except psycopg.errors.InsufficientPrivilege as exc:
            if "terminate" not in str(exc):  # PG 18: "... to terminate process"; 15: "... superuser process"
                raise
            if attempt == _DROP_ATTEMPTS - 1:
                raise TransientError(f"database {dbname} is busy with a backend the admin role may not end "
                                     "(an autovacuum worker); dropping it again later", "42501") from None
            time.sleep(_DROP_PAUSE_S)


def create_tagged_database(conn: Conn, create: sql.Composed, dbname: str, uid: str, *, cluster: str | None,
                           owner: str | None) -> None:
    """Run a CREATE DATABASE and tag the new database. With `owner` (a role tagged with `uid` before
    this call) the database is born owned by it: a crash between CREATE and the tag still leaves a
    database that `database_uid` and the reaper recognise through its owner."""
    if owner is not None:
        create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
    conn.execute(create)
    try:
        # PostgreSQL runs CREATE DATABASE outside any transaction, so this is the next statement
        # rather than the same transaction: no role but the owner may connect while rows arrive.
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
        tag_database(conn, dbname, uid, cluster)
    except BaseException:
        drop_forced(conn, dbname)
        raise


def untag(server: Server, kind: str, name: str, uid: str) -> None:
    """Clear our tag from a database or role we keep (deletionPolicy Retain): the reaper must not take
    it for an orphan once its Environment is gone. Someone else's tag is left alone."""
    target = {"database": ("DATABASE", database_uid), "role": ("ROLE", role_uid)}[kind]
    with server.connect() as conn:
        if target[1](conn, name) == uid:
            conn.execute(sql.SQL("COMMENT ON {} {} IS NULL").format(sql.SQL(target[0]), sql.Identifier(name)))


_DATABASES = ("SELECT d.datname, shobj_description(d.oid, 'pg_database'), shobj_description(d.datdba, 'pg_authid') "
              "FROM pg_catalog.pg_database d")


def _database_tag(db_comment: object, owner_comment: object) -> tuple[str, str | None] | None:
    """A database's own tag, else its owner's: a branch database is created owned by its tagged role,
    so it is recognisable even when a crash came between CREATE DATABASE and COMMENT."""
    return _parse(db_comment) or _parse(owner_comment)


def database_uid(conn: Conn, dbname: str) -> str | None:
    """The UID a database belongs to (its tag, or its owner role's); None when neither is ours."""
    row = conn.execute(_DATABASES + " WHERE d.datname = %s", (dbname,)).fetchone()
    parsed = _database_tag(row[1], row[2]) if row else None
    return parsed[0] if parsed else None


def role_uid(conn: Conn, role: str) -> str | None:
    row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                       (role,)).fetchone()
    return _uid(row[0]) if row else None


def database_exists(conn: Conn, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def role_exists(conn: Conn, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def find_tagged(server: Server) -> list[Tagged]:
    """Every tagged database, then every tagged role (the order orphans must be dropped in)."""
    with server.connect() as conn:
        dbs = conn.execute(_DATABASES + " ORDER BY d.datname").fetchall()
        roles = conn.execute("SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
                             "ORDER BY rolname").fetchall()
    found = [Tagged("database", str(n), *p) for n, c, o in dbs if (p := _database_tag(c, o))]
    return found + [Tagged("role", str(n), *p) for n, c in roles if (p := _parse(c))]


def drop_database(server: Server, dbname: str, uid: str | None = None) -> None:
    """DROP DATABASE ... WITH (FORCE), only when tagged with `uid` (if given); verified gone."""
    with server.connect() as conn:
        if uid is not None and database_exists(conn, dbname) and database_uid(conn, dbname) != uid:
            raise NotOurs(f"database {dbname} is not tagged as this environment's; not dropping it")
        drop_forced(conn, dbname)
        if database_exists(conn, dbname):
            raise PermanentError(f"database {dbname} still exists after DROP")


def drop_role(server: Server, role: str, uid: str | None = None) -> None:
    """DROP ROLE, only when tagged with `uid` (if given); verified gone."""
    with server.connect() as conn:
        if not role_exists(conn, role):
            return
        if uid is not None and role_uid(conn, role) != uid:
            raise NotOurs(f"role {role} is not tagged as this environment's; not dropping it")
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        if role_exists(conn, role):
            raise PermanentError(f"role {role} still exists after DROP")


def drop_branch(server: Server, dbname: str, role: str | None, uid: str | None = None) -> None:
    """Database first (the role owns it), then the role; idempotent."""
    drop_database(server, dbname, uid)
    if role:
        drop_role(server, role, uid)
