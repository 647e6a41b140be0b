"""P8: PostgreSQL 18's `file_copy_method = clone` on a file system that can reflink, made here as an
XFS (reflink=1) loop file system when the machine allows mounting one."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from bench.common import Bench, median_time
from envbranch import postgres as engine
from envbranch.postgres.probe import clone_supported
from envbranch_testing.loopfs import LoopUnavailable, loop_filesystem
from envbranch_testing.postgres import Postgres

IMAGE_BYTES = 8 * 1024**3  # sparse: only what PostgreSQL writes takes disk space
MKFS = ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"]


def reflink_clone(b: Bench, scale: int) -> dict[str, Any]:
    if not b.settings.reflink:
        return {"skipped": "BENCH_REFLINK=0"}
    if shutil.which("mkfs.xfs") is None:
        return {"error": "mkfs.xfs is not installed (make bench installs Debian's xfsprogs)"}
    try:
        with loop_filesystem(IMAGE_BYTES, MKFS) as mnt:
            return _measure_on(b, scale, mnt / "pg")
    except LoopUnavailable as exc:
        return {"error": str(exc)}


def _measure_on(b: Bench, scale: int, base_dir: Path) -> dict[str, Any]:
    with Postgres(base_dir=base_dir, durable=True) as pg:
        on_xfs = Bench(pg, b.settings)
        size = on_xfs.create_pgbench("pgbench_reflink", scale)
        admin = on_xfs.admin
        supported = clone_supported(admin)  # tried now, kept for the timed clones

        def clone() -> None:  # the engine sets file_copy_method = clone where the probe says it works
            engine.clone_database(admin, "pgbench_reflink", admin, "bench_dst", mode="Full", strategy="Template",
                                  uid=str(uuid.uuid4()))

        seconds = median_time(clone, on_xfs.drop, b.settings.repeat)
        return {"filesystem": "xfs reflink=1 (loop)", "bytes": size, "file_copy_method_clone": supported,
                "scale": scale, "seconds": seconds, "P8_reflink_clone_seconds": seconds,
                "server": pg.version}
