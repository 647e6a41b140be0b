"""The operator as a subprocess (`python -m envbranch`), its log kept for test reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from envbranch.testing.processes import ManagedProcess, ProcessExited, free_port, wait_until


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args
        self.log_path = log_path
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "envbranch", f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                f"--metrics-port={self.metrics_port}", *self.args]
        self.process = ManagedProcess("envbranch-operator", argv, self.log_path, env=self.env)

    def start(self) -> None:
        # A port picked free can be taken by another process before the operator binds it: pick again.
        for attempt in range(3):
            self.process.start()
            try:
                wait_until(self._alive, timeout=60, what="the operator's liveness endpoint")
                return
            except ProcessExited:
                if attempt == 2 or "address already in use" not in self.process.log_tail(20).lower():
                    raise
                self._choose_ports()

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
