#!/usr/bin/env python3
"""`kubectl envbranch` as krew installs it (the archive hack/krew-archive.sh builds): this launcher, the
envbranch wheel and constraints.txt.

envbranch is a Python program with compiled dependencies (psycopg, pydantic-core), so one archive
for every platform carries no interpreter: the first run creates a virtual environment next to this
file (in krew's store, removed with the plugin on upgrade or uninstall) and installs the wheel into
it, its dependencies from the package index pinned by constraints.txt (pip's own configuration, such
as a mirror, applies). Later runs start the installed `kubectl-envbranch` at once.
Needs python3 3.11 or newer on PATH. ENVBRANCH_PLUGIN_VENV names another place for the environment.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

MINIMUM = (3, 11)


def _install(venv: Path, here: Path) -> None:
    wheels = sorted(here.glob("envbranch-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"kubectl-envbranch: expected one envbranch wheel next to {here / 'kubectl-envbranch'}, "
                 f"found {len(wheels)}; reinstall the plugin (kubectl krew reinstall envbranch)")
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one from an interrupted first run
    print(f"kubectl-envbranch: first run, installing envbranch into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-c", str(here / "constraints.txt"), str(wheels[0])], check=True)


def main() -> None:
    if sys.version_info < MINIMUM:
        sys.exit(f"kubectl-envbranch needs Python {'.'.join(map(str, MINIMUM))} or newer as python3 "
                 f"(found {sys.version.split()[0]})")
    here = Path(__file__).resolve().parent  # krew runs it through a symlink in ~/.krew/bin
    venv = Path(os.environ.get("ENVBRANCH_PLUGIN_VENV") or here / "venv")
    command = venv / "bin" / "kubectl-envbranch"
    done = venv / ".envbranch-installed"
    if not done.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        with open(venv.parent / f".{venv.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two first runs at once: one installs, the other waits
            if not done.exists():
                try:
                    _install(venv, here)
                except subprocess.CalledProcessError as e:
                    sys.exit(f"kubectl-envbranch: installing envbranch failed ({e}); run it again to retry")
                done.touch()
    os.execv(command, [str(command), *sys.argv[1:]])  # noqa: S606 (the installed console script, no shell)


if __name__ == "__main__":
    main()
