"""The clone itself, on one pgbench database: every envbranch strategy and mode next to what a user
would do by hand (`cp -r` of the files, `pg_dump | psql`, `pg_dump -Fd -j2` + `pg_restore -j2`,
pgcopydb), and pgbench on the source while an online clone runs (P5)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from psycopg import sql

from bench.common import Bench, median_time, ratio
from envbranch import postgres as engine
from envbranch.api.environment import parse_rate
from envbranch_testing.postgres import Postgres, Standby
from envbranch_testing.processes import wait_until

DST = "bench_dst"


def _create_dst(b: Bench) -> None:
    with b.pg.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DST)))


def source_name(scale: int) -> str:
    return f"pgbench_s{scale}"


def measure_scale(b: Bench, scale: int) -> dict[str, Any]:
    """Median seconds of each way to copy pgbench at `scale`, and the P2/P3 ratios."""
    src = source_name(scale)
    repeat = b.settings.repeat
    tools = b.tools
    with b.pg.connect() as conn:
        oid = int(conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (src,)).fetchone()[0])  # type: ignore[index, arg-type]

    def clone(mode: str, strategy: str, method: str = "FILE_COPY") -> Callable[[], object]:
        return lambda: engine.clone_database(b.admin, src, b.admin, DST, mode=mode,  # type: ignore[arg-type]
                                             strategy=strategy, uid=str(uuid.uuid4()),  # type: ignore[arg-type]
                                             template_strategy=method)  # type: ignore[arg-type]

    def pg_dump_psql() -> None:
        _create_dst(b)
        subprocess.run(f"'{tools.path('pg_dump')}' {src} | '{tools.path('psql')}' -q -d {DST} "
                       "-v ON_ERROR_STOP=1 >/dev/null", shell=True, check=True, env=b.env())

    def dump_restore_j2() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _create_dst(b)
            subprocess.run([tools.path("pg_dump"), "-Fd", "-j2", "-f", f"{tmp}/d", src], env=b.env(), check=True)
            subprocess.run([tools.path("pg_restore"), "-j2", "-d", DST, f"{tmp}/d"], env=b.env(), check=True)

    def cp_files() -> None:
        copy = b.pg.base_dir / "cp-copy"
        subprocess.run(["cp", "-r", str(b.pg.data_dir / "base" / str(oid)), str(copy)], check=True)
        # Written to disk, as the template copy's files are (FILE_COPY fsyncs each one): without it,
        # `cp -r` times only a copy into the page cache, 0.4-1.0 s at 1 GB from run to run.
        subprocess.run(["sync", *(str(f) for f in copy.iterdir()), str(copy)], check=True)

    def drop() -> None:
        b.drop(DST)
        b.checkpoint()  # each run starts with the previous run's dirty pages written out

    row: dict[str, Any] = {
        "bytes": b.sizes[scale],
        "cp_r": median_time(cp_files, lambda: shutil.rmtree(b.pg.base_dir / "cp-copy"), repeat),
        "template_file_copy": median_time(clone("Full", "Template"), drop, repeat),
        "template_wal_log": median_time(clone("Full", "Template", "WAL_LOG"), drop, repeat),
        "dump_full": median_time(clone("Full", "Dump"), drop, repeat),
        "dump_system": median_time(clone("System", "Dump"), drop, repeat),
        "pg_dump_psql": median_time(pg_dump_psql, drop, repeat),
        "pg_dump_restore_j2": median_time(dump_restore_j2, drop, repeat),
    }
    copydb, why = _pgcopydb(b, src)
    row["pgcopydb"] = median_time(copydb, drop, repeat) if copydb else None
    if why:
        row["pgcopydb_note"] = why
    row["P2_clone_vs_cp"] = ratio(row["cp_r"], row["template_file_copy"])
    manual = {k: row[k] for k in ("pg_dump_psql", "pg_dump_restore_j2", "pgcopydb") if row.get(k)}
    best = min(manual, key=manual.__getitem__)
    row["P3_best_manual"] = best
    row["P3_dump_speedup_vs_best_manual"] = ratio(manual[best], row["dump_full"])
    return row


def _pgcopydb(b: Bench, src: str) -> tuple[Callable[[], None] | None, str | None]:
    """pgcopydb clone with the server's own pg_dump first on PATH, or why it cannot run here."""
    binary = shutil.which("pgcopydb")
    if binary is None:
        return None, "pgcopydb is not installed (make bench installs Debian's package)"
    env = {**b.env(), "PATH": f"{b.tools.bin_dir}:{os.environ.get('PATH', '')}"}

    def uri(db: str) -> str:  # the password stays in PGPASSWORD, out of the process list
        return f"postgres://{b.pg.superuser.user}@{b.pg.host}:{b.pg.port}/{db}"

    def run() -> None:
        _create_dst(b)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([binary, "clone", "--source", uri(src), "--target", uri(DST), "--dir", tmp,
                                  "--table-jobs", "2", "--index-jobs", "2"],
                                 env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            lines = [ln for ln in (out.stderr + out.stdout).splitlines() if "ERROR" in ln or "FATAL" in ln]
            raise RuntimeError("; ".join(lines[-3:]) or f"exit code {out.returncode}")

    try:
        run()
        with b.pg.connect(DST) as conn:
            rows = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()
        if not rows or not rows[0]:
            raise RuntimeError("pgcopydb finished but copied no rows")
    except Exception as exc:
        return None, f"pgcopydb {_version(binary)} cannot clone from PostgreSQL {b.pg.version} here: {exc}"
    finally:
        b.drop(DST)
    return run, None


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


# -- P5 ------------------------------------------------------------------------------------------------
PROGRESS = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps.*?(?:, (\d+) failed)?$")


class _Load:
    """TPC-B by 2 clients on `src` for as long as the block runs (pinned to `cpus`, if given), its TPS
    read second by second (pgbench -P 1 with Unix timestamps). The idle baseline and every loaded stretch
    are the same clients, measured over exactly their own window: a whole copy, its index builds too."""

    def __init__(self, b: Bench, src: str, cpus: set[int] | None = None) -> None:
        self.b, self.src, self.cpus = b, src, cpus
        self.samples: list[tuple[float, float]] = []   # (end of the second, its TPS)
        self.failed = 0                                 # failed transactions and error lines

    def __enter__(self) -> _Load:
        cpus = self.cpus
        self.proc = subprocess.Popen(
            [str(self.b.pg.bin_dir / "pgbench"), "-n", "-c", "2", "-j", "2", "-T", "36000", "-P", "1",
             "--progress-timestamp", self.src], env=self.b.env(superuser=False), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.reader = threading.Thread(target=self._read, daemon=True, name="bench-pgbench")
        self.reader.start()
        wait_until(lambda: len(self.samples) >= 2, timeout=60, what="pgbench's first progress reports")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.reader.join(timeout=10)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if m := PROGRESS.match(line.strip()):
                self.samples.append((float(m.group(1)), float(m.group(2))))
                self.failed += int(m.group(3) or 0)
            elif line.strip():
                self.failed += 1  # "client N aborted …", errors

    def tps(self, start: float, end: float) -> float:
        """The TPS over [start, end] (Unix time): each reported second weighted by how much of it lies inside."""
        wait_until(lambda: self.samples[-1][0] >= end, timeout=30, what="pgbench's report of the window's end")
        weights = [(max(0.0, min(at, end) - max(at - 1, start)), tps) for at, tps in self.samples]
        total = sum(w for w, _ in weights)
        return round(sum(w * tps for w, tps in weights) / total, 1) if total else 0.0

    def _window(self, work: Callable[[], object]) -> tuple[float, float]:
        """A checkpoint first, not counted (every window starts from the same clean state), then `work`, then
        a checkpoint inside the window (what the work left dirty is written on its account)."""
        self.b.checkpoint()
        start = time.time()
        work()
        self.b.checkpoint()
        return start, time.time()

    def idle(self, seconds: float) -> float:
        # The sleep is the measurement window itself, not a wait for something.
        return self.tps(*self._window(lambda: time.sleep(seconds)))

    def during(self, copy: Callable[[], object], seconds: float) -> dict[str, Any]:
        """Copies back to back for at least `seconds` (and at least one, whole): TPS over exactly that time."""
        times: list[float] = []

        def copies() -> None:
            start = time.time()
            while time.time() < start + seconds or not times:
                began = time.perf_counter()
                copy()
                times.append(time.perf_counter() - began)
                self.b.drop(DST)

        return {"tps": self.tps(*self._window(copies)), "copies": len(times),
                "copy_seconds": round(statistics.median(times), 3)}


def _against_idle(loaded: dict[str, Any], before: float, after: float) -> dict[str, Any]:
    """A loaded window over the mean of the idle windows just before and after it: a durable server's TPS
    drifts over minutes (checkpoints, bloat, cache), so a baseline taken long before would mislead."""
    baseline = round((before + after) / 2, 1)
    return {**loaded, "tps_idle": baseline, "tps_idle_before_after": [before, after],
            "ratio": ratio(loaded["tps"], baseline)}


def _sessions_killed(b: Bench, src: str) -> int:
    with b.pg.connect() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT sessions_killed FROM pg_stat_database WHERE datname = %s", (src,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0  # type: ignore[call-overload]


def _dump(b: Bench, src: str, options: engine.DumpOptions = engine.DumpOptions(),
          target: engine.Server | None = None) -> Callable[[], object]:
    return lambda: engine.clone_database(b.admin, src, target or b.admin, DST, mode="Full", strategy="Dump",
                                         uid=str(uuid.uuid4()), options=options)


def online_clone(b: Bench, src: str, dump_seconds: float) -> dict[str, Any]:
    """P5: pgbench TPS on the source while Dump clones run back to back, over the idle baseline; and the
    same side by side for a gentle Dump (a byte-rate cap and fewer streams) streamed into the source's
    own server, for a spooled gentle Dump into a branch server, and for a Dump that reads a streaming
    standby of the source and writes to another server (the primary does no copy work)."""
    seconds = max(int(os.environ.get("BENCH_PGBENCH_SECONDS", "10")), round(dump_seconds * 2))
    killed_before = _sessions_killed(b, src)
    gentle_options = engine.DumpOptions(streams=b.settings.gentle_streams, max_rate=parse_rate(b.settings.gentle_rate))
    with _Load(b, src) as load:
        load.idle(max(1, seconds // 4))  # warm-up: the first seconds would pay for a cold cache
        # idle, full-speed Dumps, idle, gentle Dump, idle: each loaded window against the two beside it
        idle = [load.idle(seconds)]
        busy = load.during(_dump(b, src), seconds)
        idle.append(load.idle(seconds))
        gentle = load.during(_dump(b, src, gentle_options), seconds)
        idle.append(load.idle(seconds))
    busy, gentle = _against_idle(busy, idle[0], idle[1]), _against_idle(gentle, idle[1], idle[2])
    replica, spooled = _second_machine_copies(b, src, seconds)
    return {
        "pgbench_seconds": seconds, "tps_idle": busy["tps_idle"],
        "tps_idle_before_after": busy["tps_idle_before_after"],
        "tps_during_dump": busy["tps"], "dump_clones": busy["copies"],
        "pgbench_failed_or_aborted": load.failed + replica["failed"],
        "sessions_terminated": _sessions_killed(b, src) - killed_before,
        "P5_tps_ratio": busy["ratio"],
        "gentle": {"max_rate": b.settings.gentle_rate, "streams": b.settings.gentle_streams, "spooled": True,
                   "branch_server": "another server (a second machine: its own CPU, data and spool in /dev/shm)",
                   "tps_idle_before_after": spooled["tps_idle_before_after"],
                   "tps_during_dump": spooled["tps"], "dump_clones": spooled["copies"],
                   "dump_seconds": spooled["copy_seconds"], "snapshot_seconds": spooled["snapshot_seconds"],
                   "tps_while_snapshot_held": spooled["tps_read"], "P5_gentle_read_tps_ratio": spooled["read_ratio"],
                   "full_speed_dump_seconds": busy["copy_seconds"], "P5_gentle_tps_ratio": spooled["ratio"],
                   "copy_time_ratio": ratio(spooled["copy_seconds"], busy["copy_seconds"])},
        "gentle_same_server": {"max_rate": b.settings.gentle_rate, "streams": b.settings.gentle_streams,
                               "spooled": False, "tps_idle_before_after": gentle["tps_idle_before_after"],
                               "tps_during_dump": gentle["tps"], "dump_clones": gentle["copies"],
                               "dump_seconds": gentle["copy_seconds"],
                               "P5_gentle_same_server_tps_ratio": gentle["ratio"]},
        "replica": {"tps_idle_before_after": replica["tps_idle_before_after"], "tps_during_dump": replica["tps"],
                    "dump_clones": replica["copies"], "dump_seconds": replica["copy_seconds"],
                    "rows_from": replica["rows_from"], "primary_on_its_own_cpu": replica["pinned"],
                    "standby_storage": replica["standby_storage"], "P5_replica_tps_ratio": replica["ratio"]},
    }


@contextmanager
def _primary_apart(b: Bench) -> Iterator[set[int] | None]:
    """The primary (every process of it, and the backends it forks) on the first CPU, everything this
    process starts from now on (a standby, another server, the copy's tools) on the others: two
    machines, as a standby is in production, so the primary's TPS shows its own work only. Yields the
    primary's CPUs for pgbench; None (nothing pinned) with one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or b.pg.process is None or b.pg.process.pid is None:
        yield None
        return
    primary, own = {cpus[0]}, os.sched_getaffinity(0)
    root = psutil.Process(b.pg.process.pid)

    def pin(cpu_set: set[int]) -> None:
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.cpu_affinity(sorted(cpu_set))

    pin(primary)
    os.sched_setaffinity(0, set(cpus[1:]))
    try:
        yield primary
    finally:
        os.sched_setaffinity(0, own)
        pin(own)


@contextmanager
def _another_disk() -> Iterator[Path | None]:
    """Where the standby and the branch's server keep their data: in memory (/dev/shm), standing for the
    second machine's own disk. This machine has one disk, and the primary's commits (fsync on) would
    otherwise wait behind the copy's writes on it, which no standby on its own machine causes. None
    (the default place) when there is no /dev/shm."""
    shm = Path("/dev/shm")  # noqa: S108 - only a private TemporaryDirectory is made in it
    if not shm.is_dir():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="envbranch-bench-", dir=shm) as folder:
        yield Path(folder)


def _second_machine_copies(b: Bench, src: str, seconds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """While pgbench runs on the primary, against the idle primary with the same CPUs: Dumps that read a
    hot standby of it (pg_basebackup -R) into another server; then spooled gentle Dumps that read the
    primary at full speed into a spool and load that server at the cap. The standby, that server and the
    spool stand for other machines: their own CPUs and their own storage."""
    with _primary_apart(b) as cpus, _another_disk() as disk, \
            Standby(b.pg, base_dir=disk / "standby" if disk else None) as standby, \
            Postgres(durable=True, base_dir=disk / "other" if disk else None) as other, \
            tempfile.TemporaryDirectory(prefix="envbranch-spool-", dir=disk) as spool:
        wait_until(standby.caught_up, timeout=600, what="the standby to replay the pgbench data")
        replicas = tuple(engine.replica_servers(b.admin, [(standby.host, standby.port)]))
        target = engine.Server(other.host, other.port, other.admin.user, other.admin.password)
        seen: list[str | None] = []
        reads: list[tuple[float, float]] = []  # (start, seconds the snapshot was held) of each spooled copy

        def from_standby() -> None:
            seen.append(engine.clone_database(b.admin, src, target, DST, mode="Full", strategy="Dump",
                                              uid=str(uuid.uuid4()), options=engine.DumpOptions(
                                                  replicas=replicas)).rows_from)
            engine.drop_database(target, DST)

        def spooled() -> None:
            start = time.time()
            done = engine.clone_database(b.admin, src, target, DST, mode="Full", strategy="Dump",
                                         uid=str(uuid.uuid4()), options=engine.DumpOptions(
                                             streams=b.settings.gentle_streams,
                                             max_rate=parse_rate(b.settings.gentle_rate), spool=engine.Spool(spool)))
            if not done.spooled:
                raise RuntimeError(f"the gentle copy was not spooled (no room in {spool}?)")
            reads.append((start, done.snapshot_seconds or 0.0))
            engine.drop_database(target, DST)

        with _Load(b, src, cpus) as load:
            load.idle(max(1, seconds // 4))
            idle = [load.idle(seconds)]
            replica = load.during(from_standby, seconds)  # its drop of DST on the primary finds nothing
            idle.append(load.idle(seconds))
            gentle = load.during(spooled, seconds)
            idle.append(load.idle(seconds))
            read_start, held = reads[0]
            tps_read = load.tps(read_start, read_start + held)
    replica = {**_against_idle(replica, idle[0], idle[1]), "failed": load.failed, "pinned": cpus is not None,
               "standby_storage": "memory (/dev/shm)" if disk else "the primary's disk",
               "rows_from": "standby" if seen and seen[0] == f"{standby.host}:{standby.port}" else seen[:1]}
    gentle = _against_idle(gentle, idle[1], idle[2])
    return replica, {**gentle, "snapshot_seconds": round(statistics.median(h for _, h in reads), 3),
                     "tps_read": tps_read, "read_ratio": ratio(tps_read, gentle["tps_idle"])}
