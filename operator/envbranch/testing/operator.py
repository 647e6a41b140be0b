"""The operator as a subprocess (`python -m envbranch`), its log kept for test reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from envbranch.testing.processes import ManagedProcess, free_port, wait_until


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        full_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = [sys.executable, "-m", "envbranch", f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                f"--metrics-port={self.metrics_port}", *args]
        self.process = ManagedProcess("envbranch-operator", argv, log_path, env=full_env)
        self.log_path = log_path

    def start(self) -> None:
        self.process.start()
        wait_until(self._alive, timeout=60, what="the operator's liveness endpoint")

    def _alive(self) -> bool:
        import urllib.request

        self.process.check_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=5) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
