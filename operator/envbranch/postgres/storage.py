"""A storage budget on a shared server: a copy starts only when every envbranch database there (found
by its tag), the new copy's expected size and a reserve fit the budget. PostgreSQL cannot tell a
non-superuser how much disk is free, so the budget is what the DatabaseServer's owners grant."""

from __future__ import annotations

from dataclasses import dataclass

from envbranch.api.environment import Mode
from envbranch.postgres.errors import InsufficientStorage
from envbranch.postgres.server import Server
from envbranch.postgres.tags import find_tagged

_SIZE = "SELECT pg_catalog.pg_database_size(%s)"
# What a schema-only copy takes: about an empty database (its catalog), the size of template1.
_EMPTY_DATABASE = "template1"


@dataclass(frozen=True)
class Budget:
    budget_bytes: int
    reserve_bytes: int = 0


@dataclass(frozen=True)
class Room:
    used: int        # bytes every envbranch database on the server holds now
    expected: int    # bytes the new copy is expected to take
    reserve: int
    budget: int

    @property
    def fits(self) -> bool:
        return self.used + self.expected + self.reserve <= self.budget

    def describe(self) -> str:
        return (f"envbranch databases hold {_mb(self.used)}, the copy needs about {_mb(self.expected)} and "
                f"{_mb(self.reserve)} is kept in reserve: {_mb(self.used + self.expected + self.reserve)} "
                f"against a budget of {_mb(self.budget)} (DatabaseServer spec.storage)")


def _mb(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _database_size(server: Server, dbname: str) -> int:
    with server.connect() as conn:
        row = conn.execute(_SIZE, (dbname,)).fetchone()
    return int(str(row[0])) if row and row[0] is not None else 0


def expected_copy_bytes(source: Server, source_db: str, mode: Mode) -> int:
    """Full: the source's size (a copy holds the same rows, its indexes rebuilt without bloat: no more).
    System: an empty database's."""
    return _database_size(source, source_db if mode == "Full" else _EMPTY_DATABASE)


def tagged_bytes(server: Server, excluding: str | None = None) -> int:
    """What every tagged database on `server` holds, any cluster's (they all take the same disk)."""
    names = [t.name for t in find_tagged(server) if t.kind == "database" and t.name != excluding]
    if not names:
        return 0
    with server.connect() as conn:
        row = conn.execute("SELECT coalesce(sum(pg_catalog.pg_database_size(d)), 0) FROM pg_catalog.unnest("
                           "%s::text[]) d WHERE d IN (SELECT datname FROM pg_catalog.pg_database)",
                           (names,)).fetchone()
    return int(str(row[0])) if row else 0


def require_room(target: Server, source: Server, source_db: str, mode: Mode, budget: Budget | None, *,
                 replacing: str | None = None) -> Room | None:
    """Before a copy of `source_db` onto `target` (a branch, or a refresh's second copy beside the old
    one, which still counts): InsufficientStorage unless it fits. `replacing` is a database the copy
    drops before it starts (a partial copy of an interrupted attempt). None when there is no budget."""
    if budget is None:
        return None
    room = Room(used=tagged_bytes(target, replacing), expected=expected_copy_bytes(source, source_db, mode),
                reserve=budget.reserve_bytes, budget=budget.budget_bytes)
    if not room.fits:
        raise InsufficientStorage(f"the copy of {source_db} does not fit: {room.describe()}")
    return room
