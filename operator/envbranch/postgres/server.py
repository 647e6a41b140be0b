"""Admin sessions on a PostgreSQL server: timeouts set, password kept out of every repr and argv."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from envbranch.postgres.errors import classify

LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "1h"  # a large template copy is one statement


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    sslmode: str = "prefer"
    dbname: str = "postgres"

    def same_server(self, other: Server) -> bool:
        return (self.host, self.port) == (other.host, other.port)

    def conninfo(self, dbname: str | None = None, *, timeouts: bool = True) -> str:
        options = f"-c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}" if timeouts else ""
        return make_conninfo(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=dbname or self.dbname, sslmode=self.sslmode, connect_timeout=10,
                             application_name="envbranch", options=options)

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """libpq environment for pg_dump/psql: the password never appears on a command line."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password,
                "PGSSLMODE": self.sslmode, "PGDATABASE": dbname or self.dbname, "PGAPPNAME": "envbranch",
                "PGCONNECT_TIMEOUT": "10"}

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
