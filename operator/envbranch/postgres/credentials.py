"""Step 5: the branch's own LOGIN role, owner of its database and of every object in it."""

from __future__ import annotations

import base64
import secrets

from psycopg import sql

from envbranch.postgres.errors import NotOurs
from envbranch.postgres.server import Server
from envbranch.postgres.tags import Conn, role_exists, role_uid, tag_role

PASSWORD_BYTES = 32


def new_password() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES)).decode().rstrip("=")


def _scram_verifier(conn: Conn, role: str, password: str) -> str:
    # Hashed on the client (libpq's PQencryptPasswordConn): the plain password never reaches the
    # server, so it cannot show up in a server log either.
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _ensure_role(conn: Conn, role: str, uid: str, cluster: str | None, verifier: str | None) -> None:
    """Create the role (or give it LOGIN and a password) and tag it, in the caller's transaction: a
    role is never left behind without its tag (the tag is what lets the rollback and the reaper
    recognise it). The admin becomes a member so it can create the database owned by the role, hand
    objects to it and drop them later; it is never a superuser. An existing role is taken over only
    when it is tagged with `uid` (NotOurs otherwise): never someone else's password reset."""
    ident = sql.Identifier(role)
    login = sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(verifier)) if verifier else sql.SQL("NOLOGIN")
    if role_exists(conn, role):
        if role_uid(conn, role) != uid:
            raise NotOurs(f"role {role} exists and is not tagged as this environment's; not taking it over")
        if verifier:
            conn.execute(sql.SQL("ALTER ROLE {} {}").format(ident, login))
    else:
        conn.execute(sql.SQL("CREATE ROLE {} {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION").format(
            ident, login))
    tag_role(conn, role, uid, cluster)
    if conn.info.server_version >= 160000:
        admin = sql.Identifier(conn.info.user)
        conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(ident, admin))
    else:
        conn.execute(sql.SQL("GRANT {} TO {}").format(ident, sql.Identifier(conn.info.user)))


def create_owner_role(server: Server, role: str, uid: str) -> None:
    """The branch role, tagged and without LOGIN, made before its database so the database is born
    owned by it (see tags.create_tagged_database)."""
    with server.connect() as conn, conn.transaction():
        _ensure_role(conn, role, uid, server.cluster, None)


def create_branch_role(server: Server, role: str, uid: str) -> str:
    """Create the LOGIN role, or give the owner role LOGIN and a new password; returns the password."""
    password = new_password()
    with server.connect() as conn, conn.transaction():
        _ensure_role(conn, role, uid, server.cluster, _scram_verifier(conn, role, password))
    return password


# Objects of the branch database to hand over, one ALTER ... OWNER each (never REASSIGN OWNED,
# which reaches shared objects). Extension members stay with the extension.
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
_USER_SCHEMA = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"


def _relations(kinds: str, not_dependent: str = "'e'") -> str:
    return ("SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
            f"c.relnamespace WHERE c.relkind IN ({kinds}) AND {_USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM "
            f"pg_depend d WHERE d.objid = c.oid AND d.deptype IN ({not_dependent}))")


def _routines(kinds: str) -> str:
    # Routines an object made for itself (a range type's constructors) follow that object.
    return ("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            f"WHERE p.prokind IN ({kinds}) AND {_USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_depend d "
            "WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))")


def _named(catalog: str, name: str, namespace: str) -> str:
    """Schema-qualified objects of a plain catalog (collations, statistics, text search objects)."""
    return (f"SELECT format('%I.%I', n.nspname, x.{name}) FROM {catalog} x JOIN pg_namespace n ON n.oid = "
            f"x.{namespace} WHERE {_USER_SCHEMA} AND " + _NOT_EXTENSION.format(oid="x.oid"))


def _types(condition: str) -> str:
    return ("SELECT format('%I.%I', n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = "
            f"t.typnamespace LEFT JOIN pg_class c ON c.oid = t.typrelid WHERE ({condition}) AND {_USER_SCHEMA} "
            "AND " + _NOT_EXTENSION.format(oid="t.oid"))


_OBJECTS: list[tuple[str, str]] = [
    ("SCHEMA", f"SELECT quote_ident(nspname) FROM pg_namespace n WHERE {_USER_SCHEMA} "
               "AND nspowner <> 'pg_database_owner'::regrole AND " + _NOT_EXTENSION.format(oid="n.oid")),
    ("TABLE", _relations("'r', 'p', 'f'")),
    ("VIEW", _relations("'v'")),
    ("MATERIALIZED VIEW", _relations("'m'")),
    # Sequences owned by a column (identity, serial) follow their table.
    ("SEQUENCE", _relations("'S'", not_dependent="'a', 'i', 'e'")),
    ("ROUTINE", _routines("'f', 'p', 'w'")),
    ("AGGREGATE", _routines("'a'")),
    ("DOMAIN", _types("t.typtype = 'd'")),
    ("TYPE", _types("t.typtype IN ('e', 'r') OR (t.typtype = 'c' AND c.relkind = 'c')")),
    # A multirange follows its range from PostgreSQL 16 on (and may not be altered alone); on 15 it
    # is left behind and is handed over by itself.
    ("TYPE", "SELECT format('%I.%I', n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = "
             "t.typnamespace JOIN pg_range r ON r.rngmultitypid = t.oid JOIN pg_type rt ON rt.oid = r.rngtypid "
             f"WHERE t.typowner <> rt.typowner AND {_USER_SCHEMA}"),
    ("COLLATION", _named("pg_collation", "collname", "collnamespace")),
    ("STATISTICS", _named("pg_statistic_ext", "stxname", "stxnamespace")),
    ("TEXT SEARCH CONFIGURATION", _named("pg_ts_config", "cfgname", "cfgnamespace")),
    ("TEXT SEARCH DICTIONARY", _named("pg_ts_dict", "dictname", "dictnamespace")),
    ("CONVERSION", _named("pg_conversion", "conname", "connamespace")),
    ("OPERATOR", "SELECT format('%I.%s(%s, %s)', n.nspname, o.oprname, coalesce(o.oprleft::regtype::text, "
                 "'NONE'), coalesce(o.oprright::regtype::text, 'NONE')) FROM pg_operator o JOIN pg_namespace n "
                 f"ON n.oid = o.oprnamespace WHERE {_USER_SCHEMA} AND " + _NOT_EXTENSION.format(oid="o.oid")),
    # Operator classes and families (a Template copy can hold them; only a superuser creates them).
    ("OPERATOR FAMILY", "SELECT format('%I.%I USING %I', n.nspname, f.opfname, am.amname) FROM pg_opfamily f "
                        "JOIN pg_am am ON am.oid = f.opfmethod JOIN pg_namespace n ON n.oid = f.opfnamespace "
                        f"WHERE {_USER_SCHEMA} AND " + _NOT_EXTENSION.format(oid="f.oid")),
    ("OPERATOR CLASS", "SELECT format('%I.%I USING %I', n.nspname, c.opcname, am.amname) FROM pg_opclass c "
                       "JOIN pg_am am ON am.oid = c.opcmethod JOIN pg_namespace n ON n.oid = c.opcnamespace "
                       f"WHERE {_USER_SCHEMA} AND " + _NOT_EXTENSION.format(oid="c.oid")),
    # A publication FOR ALL TABLES can only be owned by a superuser: it stays with its owner.
    ("PUBLICATION", "SELECT quote_ident(pubname) FROM pg_publication WHERE NOT puballtables"),
    ("LARGE OBJECT", "SELECT oid::text FROM pg_largeobject_metadata"),
]


def grant_ownership(server: Server, dbname: str, role: str, *, sealed: bool = False) -> int:
    """Make `role` the owner of the database and of every object in it; CONNECT only for the role
    (sealed: for no role at all; the owner role has no LOGIN then). Returns how many objects changed
    hands."""
    owner = sql.Identifier(role)
    changed = 0
    with server.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), owner))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
        if not sealed:
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), owner))
    with server.connect(dbname) as conn:
        for keyword, query in _OBJECTS:
            for (name,) in conn.execute(query).fetchall():
                # `name` is rendered by the server with quote_ident/format('%I')/regprocedure, i.e. an
                # already-quoted identifier, not user text.
                conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(keyword), sql.SQL(str(name)), owner))
                changed += 1
    return changed


def public_can_connect(server: Server, dbname: str) -> bool:
    """Whether every role (branch roles included) may connect to `dbname`: PostgreSQL's default."""
    with server.connect() as conn:
        row = conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (dbname,)).fetchone()
    return bool(row and row[0])
