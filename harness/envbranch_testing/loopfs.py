"""A small file system of its own, on a sparse image file mounted through a loop device (root only):
the reflink benchmark's XFS, and the disk a disk-full test fills."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LoopUnavailable(RuntimeError):
    """This machine cannot make or mount one (no mkfs, no loop devices, not root): the command and its error."""


def loop_unavailable(*tools: str) -> str | None:
    """Why this machine cannot make and mount a loop file system with `tools` (None when it can): what
    a test skips on. Anything failing beyond that is a failure."""
    if os.geteuid() != 0:
        return "mounting a loop file system needs root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control is missing)"
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (hack/apt-install.sh installs xfsprogs and e2fsprogs)"
    return None


def _run(argv: list[str]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise LoopUnavailable(f"`{' '.join(argv)}` failed: {(out.stderr or out.stdout).strip()}")


@contextmanager
def loop_filesystem(size_bytes: int, mkfs: list[str]) -> Iterator[Path]:
    """A mounted file system of `size_bytes` made by `mkfs` (e.g. ["mkfs.xfs", "-q", "-f", "-m",
    "reflink=1"]; the image path is appended); unmounted and deleted afterwards."""
    if reason := loop_unavailable(mkfs[0]):
        raise LoopUnavailable(reason)
    work = Path(tempfile.mkdtemp(prefix="envbranch-loopfs-"))
    image, mnt = work / "fs.img", work / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_bytes)  # sparse: only what is written takes disk space
    try:
        _run([*mkfs, str(image)])
        _run(["mount", "-o", "loop", str(image), str(mnt)])
        try:
            yield mnt
        finally:
            # Lazily: a server process that is still stopping must not keep the image busy forever.
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
