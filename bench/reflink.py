"""P8: PostgreSQL 18's `file_copy_method = clone` on a file system that can reflink, made here as an
XFS (reflink=1) loop file system when the machine allows mounting one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Bench, median_time
from envbranch import postgres as engine
from envbranch.postgres.probe import clone_supported
from envbranch_testing.postgres import Postgres

IMAGE_BYTES = 8 * 1024**3  # sparse: only what PostgreSQL writes takes disk space


def _run(argv: list[str]) -> str | None:
    """None when it worked, else the command and its exact error."""
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return None if out.returncode == 0 else f"`{' '.join(argv)}` failed: {(out.stderr or out.stdout).strip()}"


class NoReflink(Exception):
    """No reflink file system can be made here; the message says why."""


@contextmanager
def xfs_mount() -> Iterator[Path]:
    """An empty folder on a loop-mounted XFS (reflink=1), unmounted and removed afterwards."""
    if shutil.which("mkfs.xfs") is None:
        raise NoReflink("mkfs.xfs is not installed (make bench installs Debian's xfsprogs)")
    work = Path(tempfile.mkdtemp(prefix="envbranch-reflink-"))
    image, mnt = work / "xfs.img", work / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_BYTES)
    try:
        error = _run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(image)]) or \
            _run(["mount", "-o", "loop", str(image), str(mnt)])
        if error:
            raise NoReflink(error)
        try:
            yield mnt
        finally:
            _run(["umount", str(mnt)])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def reflink_clone(b: Bench, scale: int) -> dict[str, Any]:
    if not b.settings.reflink:
        return {"skipped": "BENCH_REFLINK=0"}
    try:
        with xfs_mount() as mnt:
            return _measure_on(b, scale, mnt / "pg")
    except NoReflink as exc:
        return {"error": str(exc)}


def _measure_on(b: Bench, scale: int, base_dir: Path) -> dict[str, Any]:
    with Postgres(base_dir=base_dir) as pg:
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
