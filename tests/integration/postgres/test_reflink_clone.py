"""PostgreSQL 18's `file_copy_method = clone` is chosen where the file system can reflink.

A PostgreSQL 18 server runs on a small XFS (reflink=1) loop file system made for this module, as
`make bench` does for P8. The probe reports clone support there, and a Template clone made by the
engine shares its data files' extents with the source (filefrag reports them `shared`), which only
a reflink copy does: without `file_copy_method = clone` PostgreSQL copies block by block.

(On Linux PostgreSQL 18 clones with copy_file_range(), which every local file system accepts, so
the probe cannot tell a reflink file system from another: on ext4 it reports clone support and the
kernel copies the bytes. Only the shared extents show a reflink.)
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbranch import postgres as engine
from envbranch_testing.loopfs import loop_filesystem, loop_unavailable
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import admin_server

IMAGE_BYTES = 512 * 1024**2  # sparse; XFS needs at least 300 MB


@pytest.fixture(scope="module")
def reflink_pg() -> Iterator[Postgres]:
    if reason := loop_unavailable("mkfs.xfs", "filefrag"):
        pytest.skip(reason)
    # Everything the check allowed must now work: a failure here fails the test.
    with loop_filesystem(IMAGE_BYTES, ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"]) as mnt, \
            Postgres(major="18", base_dir=mnt / "pg") as pg:
        yield pg


def _fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


def _shared_extents(path: Path) -> int:
    out = subprocess.run(["filefrag", "-v", str(path)], check=True, capture_output=True, text=True).stdout
    return sum("shared" in line for line in out.splitlines())


def test_template_clone_reflinks_on_xfs(reflink_pg: Postgres) -> None:
    pg = reflink_pg
    server = admin_server(pg)
    with pg.connect(role=pg.admin) as conn:
        conn.execute("CREATE DATABASE reflink_src")
    with pg.connect("reflink_src", role=pg.admin) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g")
    assert _fs_type(pg.data_dir) == "xfs"
    assert engine.probe(server).file_copy_clone is True
    uid = str(uuid.uuid4())
    result = engine.clone_database(server, "reflink_src", server, "reflink_dst", mode="Full", strategy="Template",
                                   uid=uid)
    try:
        assert result.strategy == "Template"
        with pg.connect("reflink_dst") as conn:
            relpath = str(conn.execute("SELECT pg_relation_filepath('t')").fetchone()[0])  # type: ignore[index]
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (20000,)
        assert _shared_extents(pg.data_dir / relpath) > 0, "the clone's table file shares no extent: not reflinked"
    finally:
        engine.drop_database(server, "reflink_dst", uid)
