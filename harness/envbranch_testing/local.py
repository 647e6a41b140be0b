"""`make up` / `make down`: a control plane and PostgreSQL that outlive the command that started them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.node import NODE_ADDRESS, Node, ensure_bridge
from envbranch_testing.node import cleanup as node_cleanup
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import pid_alive, wait_until


def up(state_dir: Path, *, node: bool = False) -> dict[str, object]:
    """With `node`, also a local node (envbranch_testing.node) that runs Pods, and PostgreSQL on the
    node's bridge address, where those Pods reach it."""
    state_file = state_dir / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(pid_alive(p) for p in state["pids"]) and bool(state.get("node")) == node:
            return dict(state)
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if node:
        ensure_bridge()
    cp = ControlPlane(base_dir=state_dir / "k8s", node_address=NODE_ADDRESS if node else None)
    pg = Postgres(base_dir=state_dir / "pg", host=NODE_ADDRESS if node else "127.0.0.1")
    local_node = Node(cp, state_dir / "node") if node else None
    try:
        cp.start()
        pg.start()
        if local_node:
            local_node.start()
    except BaseException:
        if local_node:
            local_node.stop()
        cp.stop()
        pg.stop()
        raise
    pids = [p.pid for p in cp.processes] + ([pg.process.pid] if pg.process else [])
    pids += [p.pid for p in local_node.processes] if local_node else []
    # The cluster's CA, for tests that mint client certificates (ENVBRANCH_E2E_CA_DIR).
    cp.ca.write(state_dir / "ca")
    state = {
        "pids": pids, "kubeconfig": str(cp.kubeconfig), "server": cp.server, "node": node,
        "ca_dir": str(state_dir / "ca"),
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
    state = json.loads(state_file.read_text())
    pids = [int(p) for p in state["pids"]]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=30, what="local processes to exit")
    except TimeoutError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if state.get("node"):
        node_cleanup(state_dir / "node")
    shutil.rmtree(state_dir, ignore_errors=True)
    return pids
