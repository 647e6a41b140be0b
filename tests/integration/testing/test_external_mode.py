"""The e2e suite's external cluster mode (what `make e2e-kind` uses), proven without Docker: a cluster
and an operator started here stand in for kind and the chart's Deployment, and an e2e test run in a
subprocess with ENVBRANCH_E2E_KUBECONFIG / _CA_DIR / _OPERATOR=external must pass on them without
starting a control plane or an operator of its own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import psycopg
import pytest
from kubernetes import config

from envbranch_testing.certs import CertificateAuthority
from envbranch_testing.controlplane import REPO_ROOT, ControlPlane, ExternalCluster
from envbranch_testing.operator import local_operator
from envbranch_testing.postgres import Postgres

OWN_PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager")


def _watch_descendants(pid: int, seen: set[tuple[str, ...]], done: threading.Event) -> None:
    """The command line of every process under `pid` while it runs."""
    try:
        root = psutil.Process(pid)
        while not done.is_set():
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    seen.add(tuple(child.cmdline()))
            done.wait(0.2)
    except psutil.NoSuchProcess:
        return


def test_the_e2e_suite_runs_on_an_external_cluster_and_operator(tmp_path: Path) -> None:
    with ControlPlane() as cp:
        ca_dir = tmp_path / "ca"
        cp.ca.write(ca_dir)
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        # A CA that is not the cluster's is refused up front, with a reason.
        CertificateAuthority().write(tmp_path / "other-ca")
        with pytest.raises(RuntimeError, match="is it that cluster's CA"), \
                ExternalCluster(cp.kubeconfig, tmp_path / "other-ca"):
            pass
        op = local_operator(cp, api, tmp_path / "operator.log")
        op.start()
        try:
            env = {**os.environ, "ENVBRANCH_E2E_KUBECONFIG": str(cp.kubeconfig), "ENVBRANCH_E2E_CA_DIR": str(ca_dir),
                   "ENVBRANCH_E2E_OPERATOR": "external",
                   "ENVBRANCH_E2E_OPERATOR_HEALTH": f"http://127.0.0.1:{op.liveness_port}/healthz"}
            run = subprocess.Popen(
                [sys.executable, "-m", "pytest", "tests/e2e/test_branching.py", "-k", "no_copy_flags",
                 "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}"],
                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            seen: set[tuple[str, ...]] = set()
            done = threading.Event()
            watcher = threading.Thread(target=_watch_descendants, args=(run.pid, seen, done), daemon=True)
            watcher.start()
            try:
                output, _ = run.communicate(timeout=180)
            finally:
                done.set()
                watcher.join(10)
                if run.poll() is None:
                    run.kill()
                    run.wait(10)
            operator_log = op.log()
        finally:
            op.stop()
    assert run.returncode == 0, output
    assert "1 passed" in output, output
    assert f"envbranch e2e: external cluster {cp.kubeconfig}, operator external" in output, output
    # The inner session used the cluster and the operator started here, and started neither itself.
    programs = {Path(argv[0]).name for argv in seen if argv}
    assert "postgres" in programs, seen  # its own PostgreSQL: the watch sees what the session starts
    assert not set(OWN_PROCESSES) & programs, programs
    assert not any(argv[1:3] == ("-m", "envbranch") for argv in seen), seen
    # ... and the operator started here branched: the production root and `bare`.
    assert operator_log.count("Handler 'reconcile_environment' succeeded") >= 2, operator_log[-3000:]


def _non_loopback_ipv4() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return None


def test_postgres_on_a_non_loopback_address_admits_password_clients_there() -> None:
    """ENVBRANCH_PG_LISTEN: a kind gateway is not loopback; Pods connect from other addresses."""
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with Postgres(host=address) as pg:
        with pg.connect(role=pg.admin) as conn:
            assert conn.execute("SELECT host(inet_server_addr())").fetchone() == (address,)
        with pytest.raises(psycopg.OperationalError):  # listens there only
            psycopg.connect(pg.conninfo().replace(f"host={address}", "host=127.0.0.1"))
