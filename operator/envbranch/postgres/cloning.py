"""Step 4: clone a database, by template or by an online logical copy.

- Template: `CREATE DATABASE … TEMPLATE src STRATEGY FILE_COPY|WAL_LOG` (PostgreSQL 15+), with
  `file_copy_method = clone` on PostgreSQL 18 where the file system can reflink. It needs the source
  to have no other session; it never terminates one (SourceBusy instead).
- Dump: the schema from pg_dump (pre-data, then post-data after the load, so indexes, constraints
  and triggers are built once over loaded tables), the rows streamed table by table with binary
  COPY from the source straight into the branch, two tables at a time, all readers on one exported
  snapshot. No intermediate files; works across servers and while the source is busy.
- System mode (schema only) always takes the Dump path: a template copy would copy every row only
  to delete it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

import psycopg
from psycopg import sql

from envbranch.api.environment import Mode, Strategy
from envbranch.postgres.errors import DiskFull, DumpNeeded, EngineError, PermanentError, SourceBusy, classify
from envbranch.postgres.masking import Masking, MaskingError, TableReads, key_copy_data, key_table_statements, load_key
from envbranch.postgres.masking import source_columns as masking_columns
from envbranch.postgres.probe import clone_supported
from envbranch.postgres.replicas import address, pick_replica, replay_lag
from envbranch.postgres.server import Server
from envbranch.postgres.spool import Spool
from envbranch.postgres.tags import (
    create_tagged_database,
    database_exists,
    database_uid,
    drop_database,
    tag_database,
)
from envbranch.postgres.throttle import CHUNK, ByteRate
from envbranch.postgres.tools import find_client_tools

Progress = Callable[[str, int], None]
log = logging.getLogger(__name__)
COPY_WORKERS = 2
# Session settings of the branch-side writers. Nothing is waiting on a commit of a database that is
# not in use yet; and sorting a big index in memory is faster than in runs on disk (measured: the
# pgbench_accounts primary key at scale 10 builds in 0.24-0.33 s with 256MB, 0.28-0.42 s with 64MB).
LOAD_OPTIONS = "-c synchronous_commit=off"
INDEX_OPTIONS = "-c synchronous_commit=off -c maintenance_work_mem=256MB"


@dataclass(frozen=True)
class CloneResult:
    strategy: str
    bytes: int
    seconds: float
    rows_from: str | None = None               # host:port the rows were read from
    replica_lag_seconds: float | None = None   # set when that was a replica
    snapshot_seconds: float | None = None      # a Dump: how long its snapshot held back the source's vacuum
    spooled: bool | None = None                # a Dump: read into the spool first, then loaded at the cap


@dataclass(frozen=True)
class _Dumped:
    lag: float | None
    snapshot_seconds: float
    spooled: bool


def _noop(step: str, percent: int) -> None:
    pass


def create_empty_database(server: Server, dbname: str, uid: str, owner: str | None = None) -> CloneResult:
    start = time.monotonic()
    with server.connect() as conn:
        if database_exists(conn, dbname):
            tag_database(conn, dbname, uid, server.cluster)  # the caller checked it is this environment's
        else:
            create_tagged_database(conn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)), dbname, uid,
                                   cluster=server.cluster, owner=owner)
        size = _size(conn, dbname)
    return CloneResult("Empty", size, round(time.monotonic() - start, 3))


def _size(conn: psycopg.Connection[tuple[object, ...]], dbname: str) -> int:
    row = conn.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


@dataclass(frozen=True)
class DumpOptions:
    """How a Dump reads its source: streams (tables at once), a byte-rate cap shared by all of them, and
    the source server's replicas to read from instead of it."""

    streams: int = COPY_WORKERS
    max_rate: int | None = None           # bytes per second, every stream together; None: no cap
    replicas: tuple[Server, ...] = ()     # read from the first one that is a standby of the source
    # With max_rate: the spool the rows are first read into, at full speed, so the source's snapshot
    # (which holds back its vacuum) lasts only for the read; the branch is then loaded at max_rate.
    spool: Spool | None = None


def clone_database(source: Server, source_db: str, target: Server, target_db: str, *, mode: Mode,
                   strategy: Strategy, uid: str, progress: Progress = _noop,
                   template_strategy: Literal["FILE_COPY", "WAL_LOG"] = "FILE_COPY",
                   owner: str | None = None, dump: bool = True, options: DumpOptions = DumpOptions(),
                   masking: Masking | None = None, busy_source_waits: bool = False) -> CloneResult:
    """Clone `source_db` into a new `target_db` tagged with `uid` (and owned from its creation by
    `owner`, a role tagged with `uid`). On any failure the partial database is dropped before the
    error propagates. With `dump=False`, DumpNeeded is raised where the Dump path would be taken,
    before anything is created: the caller runs `strategy="Dump"` where long work belongs. With
    `masking`, the rows are masked as the source reads them: only the Dump can do that, and only on
    the primary (the key is loaded into a temporary table, which a standby cannot hold). With
    `busy_source_waits`, Auto raises SourceBusy (retried) rather than falling back to the Dump: for a
    source whose only sessions are the operator's own, short ones (a sealed snapshot)."""
    start = time.monotonic()
    secrets = (source.password, target.password, *(masking.secrets() if masking else ()))
    with target.connect() as conn:
        if database_exists(conn, target_db):
            raise PermanentError(f"database {target_db} already exists on the target server")
    if masking is not None and (strategy != "Dump" or mode != "Full"):
        raise PermanentError("a masked copy is a Full Dump: the rows are masked as the source reads them")
    if strategy == "Template" and (mode == "System" or not source.same_server(target)):
        raise PermanentError("strategy Template needs mode Full and the source on the same server; "
                             "use Dump or Auto")
    try:
        chosen, read_from, dumped = "Template", source, None
        if not (strategy in ("Auto", "Template") and mode == "Full" and source.same_server(target)
                and _templated(target, source_db, target_db, template_strategy, uid, owner, strategy,
                               busy_source_waits)):
            chosen = "Dump"
            replicas = options.replicas if masking is None else ()
            read_from = pick_replica(source, replicas, source_db) if replicas else source
            _require_dumpable(read_from, source_db)
            if not dump:
                raise DumpNeeded()
            dumped = _dump_with_tls(read_from, source_db, target, target_db, mode, progress, uid, owner, options,
                                    masking, secrets)
        with target.connect() as conn:
            tag_database(conn, target_db, uid, target.cluster)
            size = _size(conn, target_db)
    except DumpNeeded:
        raise
    except BaseException as exc:
        if isinstance(exc, DiskFull):
            _release_disk(target, owner, target_db, uid)
        _drop_quietly(target, target_db, uid)
        if isinstance(exc, EngineError) or not isinstance(exc, Exception):
            raise
        raise classify(exc, secrets) from None
    progress("database", 100)
    return CloneResult(chosen, size, round(time.monotonic() - start, 3), rows_from=address(read_from),
                       replica_lag_seconds=dumped.lag if dumped else None,
                       snapshot_seconds=dumped.snapshot_seconds if dumped else None,
                       spooled=dumped.spooled if dumped else None)


def _templated(target: Server, source_db: str, target_db: str, method: str, uid: str, owner: str | None,
               strategy: Strategy, busy_source_waits: bool) -> bool:
    """True when the template copy was made; False when Auto may fall back to the Dump."""
    try:
        _template(target, source_db, target_db, method, uid, owner)
        return True
    except (SourceBusy, PermanentError) as exc:
        waits = busy_source_waits and isinstance(exc, SourceBusy)
        if strategy == "Template" or waits or not _template_can_fall_back(exc):
            raise
        return False


def _dump_with_tls(source: Server, source_db: str, target: Server, target_db: str, mode: Mode, progress: Progress,
                   uid: str, owner: str | None, options: DumpOptions, masking: Masking | None,
                   secrets: tuple[str, ...]) -> _Dumped:
    # pg_dump and psql read the TLS files at every connection: they stay for the whole copy.
    with source.tls_files() as src, target.tls_files() as dst:
        try:
            return _dump(src, source_db, dst, target_db, mode, progress, uid, owner, options, masking)
        except Exception as exc:
            raise classify(exc, secrets, tls_dirs=(src.tls_dir, dst.tls_dir)) from None


# Objects only a superuser may create: a Dump, restored as the branch role, can never recreate them.
_SUPERUSER_ONLY = (
    "SELECT 'operator class ' || format('%I.%I', n.nspname, c.opcname) FROM pg_catalog.pg_opclass c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace WHERE n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
    "WHERE d.classid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e') "
    "UNION ALL "
    "SELECT 'operator family ' || format('%I.%I', n.nspname, f.opfname) FROM pg_catalog.pg_opfamily f "
    "JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace WHERE n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
    "WHERE d.classid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.objid = f.oid AND d.deptype = 'e') "
    "ORDER BY 1")


def _require_dumpable(source: Server, source_db: str) -> None:
    """Fail before anything is copied when the source holds what no Dump can recreate."""
    with source.connect(source_db) as conn:
        found = [str(row[0]) for row in conn.execute(_SUPERUSER_ONLY).fetchall()]
    if found:
        raise PermanentError(
            f"source database {source_db} has {', '.join(found[:5])}{' and more' if len(found) > 5 else ''}: only a "
            "superuser may create those, so a Dump (and every System branch) cannot copy it; branch it in Full "
            "mode with strategy Template on the same server")


def _template_can_fall_back(exc: EngineError) -> bool:
    # Busy source, or an admin that may not use the source as a template: Dump can still work.
    return isinstance(exc, SourceBusy) or exc.sqlstate == "42501"


_COPIED_TABLES = ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                  "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                  "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'")


def _release_disk(target: Server, owner: str | None, dbname: str, uid: str) -> None:
    """After a disk-full, the partial copy's tables dropped before the database (only a database with
    our tag, as its branch role). DROP DATABASE needs a checkpoint, and a checkpoint on a full disk stops
    the whole server (PANIC writing its small state files); dropping tables only marks catalog rows, and
    their files are cut to nothing at commit."""
    with contextlib.suppress(EngineError):
        with target.connect() as conn:
            if database_uid(conn, dbname) != uid:
                return
        _drop_tables(target.as_role(owner), dbname)


def _drop_tables(branch: Server, dbname: str) -> None:
    with branch.connect(dbname) as conn:
        tables = [sql.Identifier(str(schema), str(name)) for schema, name in conn.execute(_COPIED_TABLES).fetchall()]
        if tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.SQL(", ").join(tables)))


def _drop_quietly(server: Server, dbname: str, uid: str) -> None:
    # Only a database with our tag: a CREATE that lost a race for the name must not drop the winner's.
    with contextlib.suppress(EngineError):  # the inventory and the reaper still know about it
        drop_database(server, dbname, uid)


def _template(server: Server, source_db: str, target_db: str, method: str, uid: str, owner: str | None) -> None:
    with server.connect() as conn:
        # Reflink clone where the file system supports it (tried once per server by its CloneSupport).
        if conn.info.server_version >= 180000 and method == "FILE_COPY" and clone_supported(server):
            conn.execute("SET file_copy_method = clone")
        create_tagged_database(conn, sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
            sql.Identifier(target_db), sql.Identifier(source_db), sql.SQL(method)), target_db, uid,
            cluster=server.cluster, owner=owner)


# -- Dump --------------------------------------------------------------------------------------------
def _env(server: Server, dbname: str, options: str) -> dict[str, str]:
    return {**server.env(dbname), "PGOPTIONS": f"{server.session_options()} {options}"}


class _SchemaSection:
    """`pg_dump --section=…` on the exported snapshot, started at once and read into memory (a schema
    script is small; no temp file): post-data is dumped while the rows are copied, so its catalog
    queries cost no wall time."""

    def __init__(self, source: Server, source_db: str, section: str, snapshot: str, tools_major: int) -> None:
        self.tools = find_client_tools(tools_major)
        self.proc = subprocess.Popen(
            # -B (--no-blobs on 15, --no-large-objects on 16+): large objects are data. pg_dump 15's
            # pre-data creates them, so a System branch would hold them; Full copies them itself.
            [self.tools.path("pg_dump"), f"--section={section}", "--no-owner", "--no-privileges", "-B",
             f"--snapshot={snapshot}"],
            env=source.env(source_db), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.output: tuple[bytes, bytes] = (b"", b"")
        self.reader = threading.Thread(target=self._read, name=f"envbranch-{section}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        self.output = self.proc.communicate()

    def wait(self) -> None:
        self.reader.join()

    def restore_into(self, target: Server, target_db: str) -> None:
        self.reader.join()
        if self.proc.returncode != 0:
            raise subprocess.CalledProcessError(self.proc.returncode, [self.tools.path("pg_dump")],
                                                stderr=self.output[1])
        restore = subprocess.run(
            [self.tools.path("psql"), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
            env=_env(target, target_db, INDEX_OPTIONS), input=self.output[0], capture_output=True, check=False)
        if restore.returncode != 0:
            raise subprocess.CalledProcessError(restore.returncode, [self.tools.path("psql")], stderr=restore.stderr)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.reader.join()


_TABLES = """
SELECT c.oid, n.nspname, c.relname, pg_relation_size(c.oid) AS size,
       array_agg(a.attname ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '') AS cols
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
GROUP BY c.oid, n.nspname, c.relname ORDER BY size DESC
"""
_SEQUENCES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
"""


def _dump(source: Server, source_db: str, target: Server, target_db: str, mode: Mode, progress: Progress,
          uid: str, owner: str | None, options: DumpOptions, masking: Masking | None = None) -> _Dumped:
    """The online copy; the replay lag of `source` when it is a standby, at the snapshot. The snapshot
    ends as soon as nothing more is read: before the index builds, and with a spool before the load."""
    with target.connect() as conn:
        # Tagged from the start: a crash in the middle of the copy leaves a database its Environment
        # (or, once that is gone, the reaper) recognises as its own and may drop.
        create_tagged_database(conn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target_db)), target_db, uid,
                               cluster=target.cluster, owner=owner)
    # Everything that writes into the branch runs as its role: code the source holds (CHECK
    # constraints, generated columns, index expressions) never runs with the admin's rights.
    branch = target.as_role(owner)
    # One REPEATABLE READ transaction exports the snapshot every reader shares, pg_dump included.
    with source.connect(source_db, timeouts=False, autocommit=False) as snap_conn:
        if masking is not None:
            load_key(snap_conn, masking)  # before the snapshot: COPY data, never in a log
        snap_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = str(snap_conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        taken = time.monotonic()
        lag = replay_lag(snap_conn) if options.replicas else None
        tools_major = max(snap_conn.info.server_version, _server_version(target)) // 10000
        progress("schema", 5)
        sections = [_SchemaSection(source, source_db, s, snapshot, tools_major) for s in ("pre-data", "post-data")]

        def end_snapshot() -> float:
            sections[1].wait()  # pg_dump has imported the snapshot and read the post-data
            snap_conn.rollback()  # the source's vacuum goes on from here
            return round(time.monotonic() - taken, 3)

        spool: str | None = None
        try:
            sections[0].restore_into(branch, target_db)
            held = 0.0
            if mode == "Full":
                rows = snap_conn.execute(_TABLES).fetchall()
                # A table whose columns are all generated has nothing to copy.
                tables = [_Table(str(r[1]), str(r[2]), int(str(r[3])), [str(c) for c in cast(list[object], r[4])])
                          for r in rows if r[4]]
                stream = _TableStream(source, source_db, branch, target_db, snapshot, options,
                                      _masked_reads(snap_conn, masking))
                slices = _slices(tables, options.streams)
                with _spool_for(options, slices) as spool:
                    if spool is None:
                        _copy_tables(snap_conn, stream, slices, progress)
                        _copy_sequences(snap_conn, branch, target_db)
                        _copy_large_objects(snap_conn, branch, target_db)
                        held = end_snapshot()
                    else:
                        files = {id(item): Path(spool) / f"{n}.copy" for n, item in enumerate(slices)}
                        _in_streams(slices, options.streams, lambda item: stream.read_into(item, files[id(item)]),
                                    progress, 10, 35)
                        _copy_sequences(snap_conn, branch, target_db)
                        _copy_large_objects(snap_conn, branch, target_db)
                        held = end_snapshot()
                        _in_streams(slices, options.streams, lambda item: stream.load_from(item, files[id(item)]),
                                    progress, 50, 40)
            else:
                held = end_snapshot()
            progress("indexes", 90)
            sections[1].restore_into(branch, target_db)
        finally:
            for section in sections:
                section.close()
    return _Dumped(lag, held, spool is not None)


def _masked_reads(snap_conn: psycopg.Connection[tuple[object, ...]], masking: Masking | None) -> TableReads | None:
    if masking is None:
        return None
    try:
        return TableReads(masking, masking_columns(snap_conn))
    except MaskingError as exc:
        raise PermanentError(str(exc)) from None


def _server_version(server: Server) -> int:
    with server.connect() as conn:
        return int(conn.info.server_version)


@dataclass(frozen=True)
class _Table:
    schema: str
    name: str
    size: int
    columns: list[str]
    blocks: tuple[int, int | None] | None = None  # a slice of a big table: [first, last) block


SPLIT_BYTES = 32 * 1024 * 1024
SMALL_BYTES = 1024 * 1024
BLOCK_SIZE = 8192


def _slices(tables: list[_Table], streams: int = COPY_WORKERS) -> list[_Table]:
    """Big tables cut into one block range per stream, so every stream copies the table that dominates."""
    out: list[_Table] = []
    for t in tables:
        if t.size < SPLIT_BYTES or streams == 1:
            out.append(t)
            continue
        blocks = t.size // BLOCK_SIZE
        step = -(-blocks // streams)
        for i in range(streams):
            last = None if i == streams - 1 else (i + 1) * step  # open-ended: nothing is missed
            out.append(_Table(t.schema, t.name, t.size // streams, t.columns, (i * step, last)))
    return sorted(out, key=lambda t: -t.size)


class _Tally:
    """What the copy's streams share: bytes done (for progress) and the first error, which stops them all."""

    def __init__(self, tables: list[_Table], progress: Progress, start: int = 10, span: int = 80) -> None:
        self.total = sum(t.size for t in tables) or 1
        self.done = 0
        self.errors: list[BaseException] = []
        self.progress, self.start, self.span = progress, start, span
        self.lock = threading.Lock()

    def copied(self, item: _Table) -> None:
        with self.lock:
            self.done += item.size
            self.progress("data", self.start + self.span * self.done // self.total)


def _copy_tables(snap_conn: psycopg.Connection[tuple[object, ...]], stream: _TableStream, tables: list[_Table],
                 progress: Progress) -> None:
    """Each table streams from one psql to another (binary COPY, C all the way: Python would touch
    every row), `streams` tables at a time, every reader on the exported snapshot (_TableStream).
    Tables under SMALL_BYTES go through this process instead, on the snapshot's own session and one
    branch session, beside the streams (before them, with one stream): two processes and two logins
    per table would cost more than their rows."""
    tally = _Tally(tables, progress)
    small = [t for t in tables if t.blocks is None and t.size < SMALL_BYTES]
    _run_streams([t for t in tables if t not in small], stream.options.streams, stream.copy, tally,
                 beside=lambda: _copy_small_tables(snap_conn, stream, small, tally))


def _guarded(tally: _Tally, work: Callable[[], None]) -> None:
    try:
        work()
    except BaseException as exc:
        tally.errors.append(exc)


def _in_streams(tables: list[_Table], streams: int, do: Callable[[_Table], None], progress: Progress,
                start: int, span: int) -> None:
    """`do` for every table, `streams` at a time, progress from `start` % over `span` %."""
    _run_streams(tables, streams, do, _Tally(tables, progress, start, span))


def _run_streams(tables: list[_Table], streams: int, do: Callable[[_Table], None], tally: _Tally,
                 beside: Callable[[], None] | None = None) -> None:
    """`do` for every table in `streams` threads, and `beside` in this one (before them, with one
    stream); the first error stops them all and is raised."""
    work: queue.Queue[_Table] = queue.Queue()
    for table in tables:
        work.put(table)
    if beside is not None and streams == 1:
        _guarded(tally, beside)
    threads = [threading.Thread(target=_work_off, args=(work, do, tally), name=f"envbranch-copy-{i}", daemon=True)
               for i in range(min(streams, work.qsize()))]
    for t in threads:
        t.start()
    if beside is not None and streams > 1:
        _guarded(tally, beside)
    for t in threads:
        t.join()
    if tally.errors:
        raise tally.errors[0]


def _spool_for(options: DumpOptions, tables: list[_Table]) -> contextlib.AbstractContextManager[str | None]:
    """This copy's spool directory, reserved, when it should use one: a rate cap, a spool, and room there
    for every table's rows (a COPY is about the size of its table) with a tenth to spare; else None
    (the rows stream at the cap)."""
    if options.spool is None or options.max_rate is None:
        return contextlib.nullcontext(None)
    return options.spool.reserved(sum(t.size for t in tables) * 11 // 10)


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file only this process's user may read: it holds the source's rows."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        yield out


def _work_off(work: queue.Queue[_Table], do: Callable[[_Table], None], tally: _Tally) -> None:
    """One copy stream: tables from the queue until it is empty or another stream failed."""
    def drain() -> None:
        while not tally.errors:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            do(item)
            tally.copied(item)

    _guarded(tally, drain)


def copy_out_statement(item: _Table) -> sql.Composed:
    """The read of one table (or one block slice of it) as binary COPY: the one place that says which
    rows and columns of a table leave the source."""
    table = sql.Identifier(item.schema, item.name)
    columns = _column_list(item)
    where = _slice(item, sql.SQL("ctid"))
    if where is None:
        return sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(table, columns)
    # ONLY: a slice reads this table's blocks, never an inheriting child's rows (copied as tables of their own).
    return sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT (FORMAT binary)").format(columns, table, where)


_BINARY, _TEXT = sql.SQL("binary"), sql.SQL("text")
# Masked values travel as text: dates in ISO, which every DateStyle reads back the same.
_READ_OPTIONS = "-c DateStyle=ISO -c IntervalStyle=postgres"


def _read_statement(item: _Table, reads: TableReads | None) -> tuple[sql.Composed, sql.SQL]:
    """The reader's COPY of a table or slice, and its format: binary as it is, text when masked (the
    branch parses each value with its column's type, domain and CHECKs)."""
    masked = reads.query(item.schema, item.name, item.columns, _slice(item, sql.SQL("src.ctid"))) if reads else None
    if masked is not None:
        return sql.SQL("COPY ({}) TO STDOUT").format(masked), _TEXT
    return copy_out_statement(item), _BINARY


def _slice(item: _Table, ctid: sql.Composable) -> sql.Composable | None:
    """The block range of a slice of a big table; None for a whole table."""
    if item.blocks is None:
        return None
    first, last = item.blocks
    where = sql.SQL("{} >= {}::tid").format(ctid, sql.Literal(f"({first},0)"))
    if last is not None:
        where = sql.SQL("{} AND {} < {}::tid").format(where, ctid, sql.Literal(f"({last},0)"))
    return where


def _column_list(item: _Table) -> sql.Composed:
    return sql.SQL(", ").join([sql.Identifier(c) for c in item.columns])


def _copy_in_statement(item: _Table, fmt: sql.SQL, *, freeze: bool) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(
        sql.Identifier(item.schema, item.name), _column_list(item), fmt, sql.SQL(", FREEZE" if freeze else ""))


class _TableStream:
    """A whole table is emptied and loaded in one transaction with COPY FREEZE: its rows arrive
    frozen and all-visible, so neither the index builds after the load nor the first readers of the
    branch rewrite every page to set hint bits (and, on a wal_level=minimal server, the load skips
    WAL). The slices of a split table share it, so they load plainly. With a rate cap the bytes pass
    through this process, paced by one ByteRate all streams share; without, reader and writer are
    joined by a pipe."""

    def __init__(self, source: Server, source_db: str, target: Server, target_db: str, snapshot: str,
                 options: DumpOptions, reads: TableReads | None = None) -> None:
        self.options, self.reads = options, reads
        self.rate = ByteRate(options.max_rate) if options.max_rate else None
        self.target, self.target_db = target, target_db
        self.psql = find_client_tools(_server_version(target) // 10000).path("psql")
        self.base = [self.psql, "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]
        self.source_env = _env(source, source_db, _READ_OPTIONS)
        self.target_env = _env(target, target_db, LOAD_OPTIONS)
        self.set_snapshot = sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)).as_string(None)

    def _load(self, item: _Table, fmt: sql.SQL) -> list[str]:
        if item.blocks is not None:
            return ["-c", _copy_in_statement(item, fmt, freeze=False).as_string(None)]
        truncate = sql.SQL("TRUNCATE ONLY {}").format(sql.Identifier(item.schema, item.name)).as_string(None)
        return ["-c", "BEGIN", "-c", truncate, "-c", _copy_in_statement(item, fmt, freeze=True).as_string(None),
                "-c", "COMMIT"]

    def _reader(self, item: _Table, stdout: int | IO[bytes]) -> tuple[subprocess.Popen[bytes], sql.SQL]:
        """The psql that COPYs `item` out on the snapshot into `stdout`, and the format it writes."""
        copy_out, fmt = _read_statement(item, self.reads)
        # A masked read first loads the key pads (psql's stdin), before it imports the snapshot.
        key = [a for s in key_table_statements() for a in ("-c", s)] if fmt is _TEXT else []
        reader = subprocess.Popen(
            [*self.base, *key, "-c", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "-c", self.set_snapshot,
             "-c", copy_out.as_string(None), "-c", "COMMIT"],
            env=self.source_env, stdin=subprocess.PIPE if key else subprocess.DEVNULL,
            stdout=stdout, stderr=subprocess.PIPE)
        if key and self.reads is not None:
            _feed_key(reader, self.reads)
        return reader, fmt

    def read_into(self, item: _Table, path: Path) -> None:
        """`item`'s rows into the spool file `path`, as fast as the source gives them."""
        with _private_file(path) as out:
            reader, _ = self._reader(item, out)
            # Not communicate(): a masked read's stdin (the key) is already written and closed.
            err = reader.stderr.read() if reader.stderr else b""
            reader.wait()
        if reader.returncode != 0:
            raise subprocess.CalledProcessError(reader.returncode, [self.psql], stderr=err)

    def load_from(self, item: _Table, path: Path) -> None:
        """The spool file `path` into the branch, at the rate cap; the file is removed once loaded."""
        with path.open("rb") as rows:
            rc, err = self._write(item, rows, _read_statement(item, self.reads)[1])
        if rc != 0:
            raise subprocess.CalledProcessError(rc, [self.psql], stderr=err)
        path.unlink()

    def copy(self, item: _Table) -> None:
        reader, fmt = self._reader(item, subprocess.PIPE)
        assert reader.stdout is not None
        try:
            writer_rc, writer_err = self._write(item, reader.stdout, fmt)
        finally:
            reader.stdout.close()
            reader_err = reader.stderr.read() if reader.stderr else b""
            reader.wait()
        # A reader killed by SIGPIPE only says that the writer went first: the writer's error is the cause.
        if reader.returncode != 0 and not (reader.returncode == -signal.SIGPIPE and writer_rc != 0):
            raise subprocess.CalledProcessError(reader.returncode, [self.psql], stderr=reader_err)
        if writer_rc != 0:
            raise subprocess.CalledProcessError(writer_rc, [self.psql], stderr=writer_err)

    def _write(self, item: _Table, rows: IO[bytes], fmt: sql.SQL) -> tuple[int, bytes]:
        """The writer psql loading `rows`: (exit code, stderr)."""
        argv = [*self.base, *self._load(item, fmt)]
        if self.rate is None:
            done = subprocess.run(argv, env=self.target_env, stdin=rows, capture_output=True, check=False)
            return done.returncode, done.stderr
        writer = subprocess.Popen(argv, env=self.target_env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        assert writer.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # the writer stopped: its exit code and stderr say why
            for chunk in self.rate.paced(iter(lambda: rows.read(CHUNK), b"")):
                writer.stdin.write(chunk)
        with contextlib.suppress(BrokenPipeError):
            writer.stdin.close()
        return writer.wait(), writer.stderr.read() if writer.stderr else b""


def _feed_key(reader: subprocess.Popen[bytes], reads: TableReads) -> None:
    assert reader.stdin is not None
    try:
        reader.stdin.write(key_copy_data(reads.masking))
        reader.stdin.close()
    except BrokenPipeError:
        pass  # the reader failed to start: its exit status and stderr tell why


def _copy_small_tables(snap_conn: psycopg.Connection[tuple[object, ...]], stream: _TableStream,
                       small: list[_Table], tally: _Tally) -> None:
    if not small:
        return
    with stream.target.connect(stream.target_db) as dst:
        dst.execute("SET synchronous_commit = off")
        for item in small:
            if tally.errors:
                return
            _copy_small(snap_conn, dst, item, stream.rate, stream.reads)
            tally.copied(item)


def _copy_small(snap_conn: psycopg.Connection[tuple[object, ...]], dst: psycopg.Connection[tuple[object, ...]],
                item: _Table, rate: ByteRate | None, reads: TableReads | None = None) -> None:
    copy_out, fmt = _read_statement(item, reads)
    with dst.transaction():
        dst.execute(sql.SQL("TRUNCATE ONLY {}").format(sql.Identifier(item.schema, item.name)))
        with dst.cursor().copy(_copy_in_statement(item, fmt, freeze=True)) as into, \
                snap_conn.cursor().copy(copy_out) as out:
            for data in (rate.paced(out) if rate else out):
                into.write(data)


def _copy_sequences(snap_conn: psycopg.Connection[tuple[object, ...]], target: Server, target_db: str) -> None:
    seqs = snap_conn.execute(_SEQUENCES).fetchall()
    with target.connect(target_db) as dst:
        for schema, name in seqs:
            ident = sql.Identifier(str(schema), str(name))
            row = snap_conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
            assert row is not None
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (ident.as_string(dst), row[0], row[1]))


def _copy_large_objects(snap_conn: psycopg.Connection[tuple[object, ...]], target: Server, target_db: str) -> None:
    oids = [r[0] for r in snap_conn.execute("SELECT oid FROM pg_largeobject_metadata ORDER BY oid").fetchall()]
    if not oids:
        return
    # The schema sections never make them (pg_dump -B): each is created here, with its own OID.
    with target.connect(target_db) as dst:
        for oid in oids:
            data = snap_conn.execute("SELECT lo_get(%s)", (oid,)).fetchone()[0]  # type: ignore[index]
            dst.execute("SELECT lo_from_bytea(%s, %s)", (oid, data))
