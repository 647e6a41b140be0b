"""`make up` / `make down`: a control plane and PostgreSQL that outlive the command that started them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.postgres import Postgres
from envbranch.testing.processes import pid_alive, wait_until


def up(state_dir: Path) -> dict[str, object]:
    state_file = state_dir / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(pid_alive(p) for p in state["pids"]):
            return dict(state)
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(base_dir=state_dir / "k8s")
    pg = Postgres(base_dir=state_dir / "pg")
    try:
        cp.start()
        pg.start()
    except BaseException:
        cp.stop()
        pg.stop()
        raise
    pids = [p.pid for p in cp.processes] + ([pg.process.pid] if pg.process else [])
    state = {
        "pids": pids, "kubeconfig": str(cp.kubeconfig), "server": cp.server,
        "postgres": {"host": pg.host, "port": pg.port, "superuser": pg.superuser.user,
                     "admin": pg.admin.user, "version": pg.version},
    }
    # Passwords stay in a private file, never on the terminal.
    secrets_file = state_dir / "postgres-passwords.json"
    secrets_file.write_text(json.dumps({pg.superuser.user: pg.superuser.password,
                                        pg.admin.user: pg.admin.password}))
    secrets_file.chmod(0o600)
    state_file.write_text(json.dumps(state, indent=2))
    return state


def down(state_dir: Path) -> list[int]:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        return []
    pids = [int(p) for p in json.loads(state_file.read_text())["pids"]]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=30, what="local processes to exit")
    except TimeoutError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(state_dir, ignore_errors=True)
    return pids
