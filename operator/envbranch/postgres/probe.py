"""What a server can do: version, privileges of the admin role, clone strategies."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from psycopg import sql

from envbranch.postgres.errors import EngineError
from envbranch.postgres.server import Server


@dataclass(frozen=True)
class TlsSeen:
    """The admin session's transport as the server reports it (pg_stat_ssl)."""

    encrypted: bool
    protocol: str | None = None
    # What libpq checked before it sent the password: "None", "CA" (the chain) or "Full" (chain
    # and host name). It follows from sslMode; a connection that is up passed those checks.
    verified: str = "None"
    client_certificate: bool = False

    def describe(self) -> str:
        if not self.encrypted:
            return "not encrypted"
        checked = {"Full": "server certificate verified (CA and host name)",
                   "CA": "server certificate verified against the CA (host name not checked)",
                   "None": "server certificate not verified"}[self.verified]
        client = ", client certificate presented" if self.client_certificate else ""
        return f"encrypted ({self.protocol}), {checked}{client}"


@dataclass(frozen=True)
class Capabilities:
    version: str
    version_num: int
    can_create_db: bool
    can_create_role: bool
    strategies: list[str] = field(default_factory=list)
    file_copy_clone: bool = False
    tls: TlsSeen = field(default_factory=lambda: TlsSeen(False))


def _verified(server: Server) -> str:
    if server.sslmode == "verify-full":
        return "Full"
    # libpq checks the chain in `require` too when a root certificate file is given (and spec.tls
    # always gives one).
    if server.sslmode == "verify-ca" or (server.sslmode == "require" and server.tls is not None):
        return "CA"
    return "None"


def probe(server: Server) -> Capabilities:
    """Connects as the admin role; raises a classified EngineError when it cannot."""
    with server.connect() as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
        num = int(conn.info.server_version)
        row = conn.execute("SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
        createdb, createrole = (bool(row[0]), bool(row[1])) if row else (False, False)
        ssl = conn.execute("SELECT ssl, version, client_dn IS NOT NULL FROM pg_catalog.pg_stat_ssl "
                           "WHERE pid = pg_catalog.pg_backend_pid()").fetchone()
    encrypted = bool(ssl and ssl[0])
    tls = TlsSeen(encrypted, str(ssl[1]) if ssl and encrypted else None,
                  _verified(server) if encrypted else "None", bool(ssl and ssl[2]))
    strategies = ["Dump"] if createdb else []
    if createdb and num >= 150000:
        strategies.insert(0, "Template")
    clone = clone_supported(server) if createdb and num >= 180000 else False
    return Capabilities(version, num, createdb, createrole, strategies, clone, tls)


class CloneSupport:
    """file_copy_clone_works, tried once per server (host, port) for the life of its holder (the file
    system under a server does not change; a probe every minute would create a database every minute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int], bool] = {}

    def works(self, server: Server) -> bool:
        key = (server.host, server.port)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = file_copy_clone_works(server)
            with self._lock:
                self._known[key] = known
        return known


def clone_supported(server: Server) -> bool:
    """Through the server's CloneSupport when it has one, else tried now."""
    if server.clone_support is not None:
        return server.clone_support.works(server)
    return file_copy_clone_works(server)


def file_copy_clone_works(server: Server) -> bool:
    """PostgreSQL 18's `file_copy_method = clone` needs a reflink file system (XFS, btrfs); the only
    sure test is to try it on a throwaway database."""
    probe_db = f"envbranch_probe_{uuid.uuid4().hex[:12]}"
    try:
        with server.connect() as conn:
            conn.execute("SET file_copy_method = clone")
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 STRATEGY FILE_COPY").format(
                    sql.Identifier(probe_db)))
            finally:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(probe_db)))
    except EngineError:
        return False
    return True
