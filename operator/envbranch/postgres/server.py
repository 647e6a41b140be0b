"""Admin sessions on a PostgreSQL server: timeouts set, password and TLS key kept out of every repr
and argv."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import make_conninfo

from envbranch.postgres.errors import classify

if TYPE_CHECKING:
    from envbranch.postgres.probe import CloneSupport

LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "1h"  # a large template copy is one statement
# Every operator session resolves names in the catalog only: a function or operator planted in a
# database it touches (public.quote_ident(name), say) is never picked instead of the catalog's.
SEARCH_PATH = "pg_catalog,pg_temp"
_PLAIN_ROLE = re.compile(r"^[A-Za-z0-9_]{1,63}$")


# File names inside a Server's private TLS folder (the Secret keys they come from).
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"


@dataclass(frozen=True)
class Tls:
    """PEM material from a DatabaseServer's `spec.tls`: the CA bundle the server certificate is
    checked against, and optionally a client certificate and key."""

    ca: bytes = field(repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL | O_NOFOLLOW: never through a file someone else placed; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    sslmode: str = "prefer"
    dbname: str = "postgres"
    # The session runs as this role (SET ROLE at connection start): what a branch database holds
    # (CHECK constraints, generated columns, index expressions) runs with the branch role's rights.
    role: str | None = None
    tls: Tls | None = field(default=None, repr=False)
    # The private folder holding `tls` as files, set only inside `with server.tls_files()`.
    tls_dir: str | None = field(default=None, repr=False, compare=False)
    # The cluster the tags written through this server name (the operator's kube-system UID): two
    # clusters that share a PostgreSQL server must never reap each other's branches. None: no cluster.
    cluster: str | None = None
    # Where the answer of the reflink-clone trial is kept (the operator's, for the life of the
    # process); None: tried at every ask.
    clone_support: CloneSupport | None = field(default=None, repr=False, compare=False)

    def as_role(self, role: str | None) -> Server:
        if role is not None and not _PLAIN_ROLE.match(role):
            raise ValueError("a session role must be a plain identifier")
        return dataclasses.replace(self, role=role)

    def session_options(self) -> str:
        return f"-c search_path={SEARCH_PATH}" + (f" -c role={self.role}" if self.role else "")

    def same_server(self, other: Server) -> bool:
        return (self.host, self.port) == (other.host, other.port)

    def secrets(self) -> tuple[str, ...]:
        """What to scrub from any message about this server. (The TLS folder's path is not secret but
        new on every call: `classify` shortens it, so a condition message does not change with it.)"""
        return (self.password,)

    @contextmanager
    def tls_files(self) -> Iterator[Server]:
        """This server with its TLS material written where libpq reads it: files 0600 in a private
        (0700) temp folder, removed when the block ends. libpq reads them while a connection starts,
        so the block spans the connections and client-tool runs that need them. Without TLS
        material, or inside another such block, the server as it is."""
        if self.tls is None or self.tls_dir is not None:
            yield self
            return
        folder = Path(tempfile.mkdtemp(prefix="envbranch-tls-"))
        try:
            _write_private(folder / CA_FILE, self.tls.ca)
            if self.tls.cert and self.tls.key:
                _write_private(folder / CERT_FILE, self.tls.cert)
                _write_private(folder / KEY_FILE, self.tls.key)
            yield dataclasses.replace(self, tls_dir=str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _tls_paths(self) -> dict[str, str]:
        """sslrootcert/sslcert/sslkey. The certificate and key paths are set even without a client
        certificate (the files are then absent, and libpq sends none): libpq never falls back to
        ~/.postgresql, so exactly the DatabaseServer's settings apply."""
        if self.tls is None:
            return {}
        if self.tls_dir is None:
            raise RuntimeError("the TLS files are not written: connect inside `with server.tls_files()`")
        folder = Path(self.tls_dir)
        return {"sslrootcert": str(folder / CA_FILE), "sslcert": str(folder / CERT_FILE),
                "sslkey": str(folder / KEY_FILE)}

    def conninfo(self, dbname: str | None = None, *, timeouts: bool = True) -> str:
        options = self.session_options()
        if timeouts:
            options += f" -c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}"
        return make_conninfo(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=dbname or self.dbname, sslmode=self.sslmode, connect_timeout=10,
                             application_name="envbranch", options=options, **self._tls_paths())

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """libpq environment for pg_dump/psql: the password and TLS files never appear on a command
        line. Call inside `with server.tls_files()` when the server has TLS material."""
        tls = {f"PG{k.upper()}": v for k, v in self._tls_paths().items()}  # PGSSLROOTCERT, PGSSLCERT, PGSSLKEY
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password,
                "PGSSLMODE": self.sslmode, "PGDATABASE": dbname or self.dbname, "PGAPPNAME": "envbranch",
                "PGCONNECT_TIMEOUT": "10", "PGOPTIONS": self.session_options(), **tls}

    @contextmanager
    def connect(self, dbname: str | None = None, *, timeouts: bool = True,
                autocommit: bool = True) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """An admin session (autocommit unless asked otherwise); psycopg errors leave as classified
        EngineErrors."""
        # libpq has read the TLS files once the connection is up: they are gone before it is used.
        with self.tls_files() as server:
            try:
                conn = psycopg.connect(server.conninfo(dbname, timeouts=timeouts), autocommit=autocommit)
            except psycopg.Error as exc:
                raise classify(exc, self.secrets(), tls_dirs=(server.tls_dir,)) from None
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise classify(exc, self.secrets()) from None
