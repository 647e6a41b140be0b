"""What every measurement shares: the settings, a timer keeping the median, pgbench data."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from envbranch import postgres as engine
from envbranch.postgres.tools import ClientTools
from envbranch_testing.postgres import Postgres

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class Settings:
    """From the environment: `make bench` uses the defaults, the smoke test tiny sizes."""

    scales: list[int]
    repeat: int
    out: Path
    docs: Path
    readme: Path | None
    branches: int          # P6: concurrent branches
    environments: int      # P7: Environments present
    idle_seconds: float    # P7: how long the API writes are watched
    reflink: bool          # P8: try a reflink loop file system
    gentle_rate: str       # P5 gentle: the Dump's maxRate (a quantity of bytes per second)
    gentle_streams: int    # P5 gentle: the Dump's streams
    snapshot_scales: list[int]  # P9: production sizes ten times apart; P10: the larger

    @classmethod
    def from_env(cls) -> Settings:
        out = os.environ.get("BENCH_OUT")
        return cls(
            scales=[int(s) for s in os.environ.get("BENCH_SCALES", "1,67").split(",")],
            repeat=int(os.environ.get("BENCH_REPEAT", "3")),
            out=Path(out) if out else BENCH_DIR / "results.json",
            # A run writing elsewhere (the smoke test) keeps its plots there and leaves the README alone.
            docs=Path(out).parent if out else REPO_ROOT / "docs",
            readme=None if out else REPO_ROOT / "README.md",
            branches=int(os.environ.get("BENCH_BRANCHES", "20")),
            environments=int(os.environ.get("BENCH_ENVIRONMENTS", "500")),
            idle_seconds=float(os.environ.get("BENCH_IDLE_SECONDS", "30")),
            reflink=os.environ.get("BENCH_REFLINK", "1") == "1",
            gentle_rate=os.environ.get("BENCH_GENTLE_RATE", "16Mi"),
            gentle_streams=int(os.environ.get("BENCH_GENTLE_STREAMS", "1")),
            # about 0.5 GB and 5 GB, as issue 16 asks for P9
            snapshot_scales=[int(s) for s in os.environ.get("BENCH_SNAPSHOT_SCALES", "34,340").split(",")],
        )


@dataclass
class Bench:
    """One PostgreSQL server and the ways to reach it: as the operator's admin role and as superuser."""

    pg: Postgres
    settings: Settings
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def admin(self) -> engine.Server:
        # The server's CloneSupport: the reflink trial runs once, as in the operator, not in every timed clone.
        return engine.Server(self.pg.host, self.pg.port, self.pg.admin.user, self.pg.admin.password,
                             clone_support=self.pg.clone_support)

    @property
    def tools(self) -> ClientTools:
        return self.pg.client_tools()

    def env(self, superuser: bool = True) -> dict[str, str]:
        role = self.pg.superuser if superuser else self.pg.admin
        return {**os.environ, "PGHOST": self.pg.host, "PGPORT": str(self.pg.port), "PGUSER": role.user,
                "PGPASSWORD": role.password}

    def create_pgbench(self, dbname: str, scale: int) -> int:
        """A pgbench database owned by the admin role, checkpointed; returns its size in bytes."""
        with self.pg.connect(role=self.pg.admin) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        subprocess.run([str(self.pg.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), dbname],
                       env=self.env(superuser=False), check=True, capture_output=True)
        with self.pg.connect() as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def drop(self, dbname: str = "bench_dst") -> None:
        """As superuser: the copies made by hand are the superuser's."""
        su = self.pg.superuser
        engine.drop_database(engine.Server(self.pg.host, self.pg.port, su.user, su.password), dbname)

    def checkpoint(self) -> None:
        with self.pg.connect() as conn:
            conn.execute("CHECKPOINT")


def median_time(fn: Callable[[], object], cleanup: Callable[[], object], repeat: int) -> float:
    """The median wall time of `fn` over `repeat` runs, `cleanup` (not timed) after each."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        cleanup()
    return round(statistics.median(samples), 3)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None
