"""Child processes of the local test environment: started, logged, waited on and stopped for sure."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Every process started here, as (pid, its start time in clock ticks since boot), so a session can
# prove none outlived it. The start time tells one of ours from a process the kernel later gave the
# same pid (pids wrap at 32768 on a busy machine within a run).
STARTED_PROCESSES: list[tuple[int, int | None]] = []


class WaitTimeout(TimeoutError):
    pass


class ProcessExited(RuntimeError):
    """A child died while we waited on it: no point waiting further."""


def wait_until(
    check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; raise WaitTimeout naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # a check may fail while its target is still starting
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# Under pytest-xdist each worker takes its ports from a block of its own below the ephemeral range
# (32768 and up on Linux), so workers starting servers at the same moment cannot pick the same port,
# nor collide with a client connection's port.
WORKER_PORT_BASE, WORKER_PORT_BLOCK = 20000, 1000
_last_worker_port = 0


def _worker_number() -> int | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port free now on 127.0.0.1: the kernel's pick, or under xdist the next free one in the
    worker's own block (in turn, so a process does not get the same port twice in a row)."""
    global _last_worker_port
    worker = _worker_number()
    if worker is None or worker >= (32768 - WORKER_PORT_BASE) // WORKER_PORT_BLOCK:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    first = WORKER_PORT_BASE + worker * WORKER_PORT_BLOCK
    for step in range(1, WORKER_PORT_BLOCK + 1):
        port = first + (_last_worker_port - first + step) % WORKER_PORT_BLOCK
        if _bindable(port):
            _last_worker_port = port
            return port
    raise RuntimeError(f"no free port in {first}-{first + WORKER_PORT_BLOCK - 1} (pytest-xdist worker {worker})")


def unprivileged_user(name: str = "envbranch") -> pwd.struct_passwd | None:
    """When running as root, the system user that PostgreSQL runs as (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


class ManagedProcess:
    """One long-running child with its output in a log file; stop() never leaves it behind."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 env: dict[str, str] | None = None, user: pwd.struct_passwd | None = None,
                 stop_signal: signal.Signals = signal.SIGTERM) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.user = user
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
                user=self.user.pw_uid if self.user else None,
                group=self.user.pw_gid if self.user else None,
                extra_groups=[] if self.user else None,
            )
        finally:
            log.close()
        STARTED_PROCESSES.append((self.proc.pid, start_ticks(self.proc.pid)))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessExited(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL, for tests that simulate a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def start_ticks(pid: int) -> int | None:
    """When the process with this pid started (/proc/<pid>/stat field 22), None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def still_running(started: Iterable[tuple[int, int | None]]) -> list[int]:
    """The pids of these processes (pid, start ticks) that are still alive: the same pid started at
    the same moment."""
    return [pid for pid, ticks in started if pid_alive(pid) and (ticks is None or start_ticks(pid) == ticks)]
