"""The process helpers a test session relies on: free_port under pytest-xdist (each worker picks from
a block of its own, below the ephemeral range, in turn, skipping a port that is taken), and the check
that no process a session started outlived it, which a pid reused by the kernel must not fool."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from envbranch_testing import processes
from envbranch_testing.processes import WORKER_PORT_BASE, WORKER_PORT_BLOCK, free_port, start_ticks, still_running


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> range:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setattr(processes, "_last_worker_port", 0)
    return range(WORKER_PORT_BASE + 3 * WORKER_PORT_BLOCK, WORKER_PORT_BASE + 4 * WORKER_PORT_BLOCK)


def test_a_worker_takes_distinct_ports_from_its_own_block(worker: range) -> None:
    ports = [free_port() for _ in range(20)]
    assert all(p in worker for p in ports), ports
    assert len(set(ports)) == len(ports)
    assert max(worker) < 32768  # not a port the kernel hands out for connections


def test_a_taken_port_is_skipped(worker: range) -> None:
    nxt = free_port() + 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", nxt))
        held.listen()
        got = free_port()
    assert got != nxt and got in worker


def test_the_kernel_picks_outside_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert free_port() >= low


def test_a_process_is_running_only_while_its_pid_has_its_start_time() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        ticks = start_ticks(proc.pid)
        assert ticks is not None
        assert still_running([(proc.pid, ticks)]) == [proc.pid]
        # The same pid with another start time: a process the kernel gave our old pid to.
        assert still_running([(proc.pid, ticks - 1)]) == []
    finally:
        proc.kill()
        proc.wait()
    assert still_running([(proc.pid, ticks)]) == []
    assert start_ticks(proc.pid) is None or start_ticks(proc.pid) != ticks
