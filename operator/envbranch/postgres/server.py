"""Admin sessions on a PostgreSQL server: timeouts set, password kept out of every repr and argv."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from envbranch.postgres.errors import classify

LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "1h"  # a large template copy is one statement
# Every operator session resolves names in the catalog only: a function or operator planted in a
# database it touches (public.quote_ident(name), say) is never picked instead of the catalog's.
SEARCH_PATH = "pg_catalog,pg_temp"
_PLAIN_ROLE = re.compile(r"^[A-Za-z0-9_]{1,63}$")


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

    def as_role(self, role: str | None) -> Server:
        if role is not None and not _PLAIN_ROLE.match(role):
            raise ValueError("a session role must be a plain identifier")
        return dataclasses.replace(self, role=role)

    def session_options(self) -> str:
        return f"-c search_path={SEARCH_PATH}" + (f" -c role={self.role}" if self.role else "")

    def same_server(self, other: Server) -> bool:
        return (self.host, self.port) == (other.host, other.port)

    def conninfo(self, dbname: str | None = None, *, timeouts: bool = True) -> str:
        options = self.session_options()
        if timeouts:
            options += f" -c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}"
        return make_conninfo(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=dbname or self.dbname, sslmode=self.sslmode, connect_timeout=10,
                             application_name="envbranch", options=options)

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """libpq environment for pg_dump/psql: the password never appears on a command line."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password,
                "PGSSLMODE": self.sslmode, "PGDATABASE": dbname or self.dbname, "PGAPPNAME": "envbranch",
                "PGCONNECT_TIMEOUT": "10", "PGOPTIONS": self.session_options()}

    @contextmanager
    def connect(self, dbname: str | None = None) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """An autocommit admin session; psycopg errors leave as classified EngineErrors."""
        try:
            conn = psycopg.connect(self.conninfo(dbname), autocommit=True)
        except psycopg.Error as exc:
            raise classify(exc, (self.password,)) from None
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise classify(exc, (self.password,)) from None
