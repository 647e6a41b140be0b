"""P9 and P10 (issue 16): sealed snapshots and refresh in place, through the operator.

Production is a durable PostgreSQL of its own that pgbench keeps busy; the snapshot and its branches live
on a second one, the branch server, whose data directory is on a loop-mounted XFS with reflinks
(elsewhere when none can be made, said in the row), as the README recommends. Every template copy
(`CREATE DATABASE … STRATEGY FILE_COPY`) begins with an immediate checkpoint of its whole server: on
production's own server that checkpoint writes whatever production dirtied since the last one, so the
copy's time follows production's writes (0.18 s right after a checkpoint, 0.7 s three seconds later,
measured at 5 GB), and production takes an I/O burst for every branch. On the branch server it writes
only the branches' own changes.

- P9: a root adopting the pgbench production, a sealed snapshot of it on the branch server (a Dump
  across servers, while production is busy), then `kubectl apply` → Ready of a Full branch of the
  snapshot, at two sizes ten times apart (BENCH_SNAPSHOT_SCALES, about 0.5 GB and 5 GB): each ≤ 1 s,
  the larger ≤ 1.2 times the smaller (a Template copy with `file_copy_method = clone` costs no data
  copy). The branch server's admin role is a member of pg_checkpoint, as the README recommends, so the
  operator checkpoints the snapshot's Dump at once; the first branch is timed as well as the median.
- P10: a Full branch of the larger snapshot refreshed in place while a client runs a query every few
  milliseconds through the branch's Secret: the longest stretch in which it could not run one (≤ 1 s
  at any size).
"""

from __future__ import annotations

import base64
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import cluster, reflink
from bench.common import Bench, Settings, ratio
from envbranch_testing.loopfs import LoopUnavailable, loop_filesystem
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until

CLIENT_PACE_S = 0.005   # how often the P10 client runs its query
BRANCH_SERVER = "branches"
P9_SAMPLES = 7
# Sparse: production, its sealed snapshot (a Dump: a copy of its own) and WAL at 5 GB fit.
IMAGE_BYTES = 32 * 1024**3


@contextmanager
def _branch_server(settings: Settings) -> Iterator[tuple[Bench, str]]:
    """The branch server: a PostgreSQL of its own on the XFS reflink file system (or in the default
    place), and which; its admin role may checkpoint."""
    with ExitStack() as stack:
        base: Path | None = None
        where = "default file system"
        if settings.reflink:
            try:
                base = stack.enter_context(loop_filesystem(IMAGE_BYTES, reflink.MKFS)) / "pg"
                where = "xfs reflink=1 (loop)"
            except LoopUnavailable as exc:
                where = f"default file system ({exc})"
        pg = stack.enter_context(Postgres(base_dir=base, durable=True))  # production durability, as P1-P8
        with pg.connect() as conn:
            conn.execute(sql.SQL("GRANT pg_checkpoint TO {}").format(sql.Identifier(pg.admin.user)))
        yield Bench(pg, settings), where


@contextmanager
def _busy(b: Bench, dbname: str) -> Iterator[None]:
    """pgbench on `dbname` (two clients) for as long as the block runs: production is never idle."""
    proc = subprocess.Popen([str(b.pg.bin_dir / "pgbench"), "-n", "-c", "2", "-T", "36000", dbname],
                            env=b.env(superuser=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait()


def measure(settings: Settings, scales: list[int], repeat: int) -> dict[str, Any]:
    """P9 at the smallest and largest of `scales` (BENCH_SNAPSHOT_SCALES), P10 at the largest."""
    small, large = scales[0], scales[-1]
    # Production in the default place, with production durability as P1-P8.
    with Postgres(durable=True) as production, _branch_server(settings) as (branches, where), \
            cluster.cluster(Bench(production, settings)) as c:
        c.project.create_server(BRANCH_SERVER, pg=branches.pg)
        c.project.wait_server_ready(BRANCH_SERVER)
        p9: dict[str, Any] = {"filesystem": where, "layout": "snapshot and branches on a branch server"}
        for scale in dict.fromkeys((small, large)):
            p9[str(scale)] = _snapshot_branch(Bench(production, settings), c, scale, repeat)
        seconds = [p9[str(s)]["seconds"] for s in dict.fromkeys((small, large))]
        p9["P9_seconds"] = seconds
        p9["P9_large_vs_small"] = ratio(seconds[-1], seconds[0])
        p10 = _refresh_cutoff(c, large)
        p10["filesystem"] = where
    return {"P9": p9, "P10": p10}


def _snapshot_branch(production: Bench, c: cluster.Cluster, scale: int, repeat: int) -> dict[str, Any]:
    dbname = f"prod_s{scale}"
    size = production.create_pgbench(dbname, scale)
    root, snapshot = f"prod9-s{scale}", f"snap-s{scale}"
    c.adopt_root(root, dbname)
    with _busy(production, dbname):
        c.project.apply_env(snapshot, {"source": root, "mode": "Full", "access": "Sealed",
                                       "database": {"serverRef": BRANCH_SERVER}})
        made = c.project.wait_phase(snapshot, "Active", timeout=3600)
        # on the snapshot's server, its default; at least P9_SAMPLES: a sample is half a second, its noise
        # a tenth of one
        samples = c.branch_samples(snapshot, "Auto", max(repeat, P9_SAMPLES))
    return {"scale": scale, "bytes": size, "snapshot_strategy": made["database"]["strategy"],
            "snapshot_seconds": made["database"]["seconds"], "branch_strategy": samples[-1][1]["strategy"],
            # the copy itself (status.database.seconds) beside the whole apply → Ready
            "clone_seconds": round(statistics.median(db["seconds"] for _, db in samples), 3),
            "first_branch_seconds": round(samples[0][0], 3),
            "seconds": round(statistics.median(s for s, _ in samples), 3)}


class _Client(threading.Thread):
    """Runs `SELECT 1` through the Secret's connection string every few milliseconds, reconnecting when
    cut off; records how long each stretch without an answer lasted."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True, name="bench-p10-client")
        self.conninfo = conninfo
        self.stopped = threading.Event()
        self.outages: list[float] = []
        self.queries = 0

    def run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        down_since: float | None = None
        while not self.stopped.wait(CLIENT_PACE_S):
            try:
                conn = conn or psycopg.connect(self.conninfo, connect_timeout=5, autocommit=True)
                conn.execute("SELECT 1")
                self.queries += 1
                if down_since is not None:
                    self.outages.append(time.monotonic() - down_since)
                    down_since = None
            except psycopg.Error:
                conn = None
                down_since = down_since or time.monotonic()


def _refresh_cutoff(c: cluster.Cluster, scale: int) -> dict[str, Any]:
    snapshot, name = f"snap-s{scale}", f"app-s{scale}"
    c.project.apply_env(name, {"source": snapshot, "mode": "Full"})
    status = c.project.wait_phase(name, "Active", timeout=3600)
    secret = c.project.core.read_namespaced_secret(f"{name}-db", status["namespace"])
    client = _Client(base64.b64decode(secret.data["uri"]).decode())
    client.start()
    wait_until(lambda: client.queries > 0, timeout=60, what="the P10 client's first answer")
    c.project.annotate(name, {"envbranch.io/refresh": "bench"})
    done = wait_until(lambda: (s := c.project.status(name)).get("refresh", {}).get("stage") in ("Done", "Failed")
                      and s.get("refresh", {}).get("token") == "bench" and s, timeout=3600,
                      what=f"the refresh of {name}", interval=0.2)
    client.stopped.set()
    client.join()
    last = done.get("lastRefresh") or {}
    return {"scale": scale, "bytes": last.get("bytes"), "stage": done["refresh"]["stage"],
            "strategy": last.get("strategy"), "refresh_seconds": last.get("seconds"),
            "operator_cutoff_seconds": last.get("cutoffSeconds"), "client_queries": client.queries,
            "client_outages": len(client.outages),
            "P10_cutoff_seconds": round(max(client.outages), 3) if client.outages else 0.0}
