"""`make demo`: the product's first impression."""

from __future__ import annotations

from rich.console import Console

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.postgres import Postgres


def run_demo(console: Console, keep: bool = False) -> int:
    with console.status("starting a local control plane (etcd, kube-apiserver, controller manager)"):
        cp = ControlPlane()
        cp.start()
    try:
        with console.status("starting PostgreSQL"):
            pg = Postgres()
            pg.start()
        try:
            version = cp.kubectl("version").stdout.strip()
            console.print(f"[bold]KUBECONFIG[/]={cp.kubeconfig}")
            console.print(version)
            console.print(f"PostgreSQL {pg.version} on {pg.host}:{pg.port}")
            return 0
        finally:
            if not keep:
                pg.stop()
    finally:
        if not keep:
            cp.stop()
