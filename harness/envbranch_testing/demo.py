"""`make demo`: the product's first impression, on a local control plane and PostgreSQL 18."""

from __future__ import annotations

import base64
import hashlib
import tempfile
import time
from pathlib import Path

import psycopg
import yaml
from kubernetes import client, config
from rich.console import Console
from rich.table import Table

from envbranch import postgres as engine
from envbranch_testing.controlplane import REPO_ROOT, ControlPlane
from envbranch_testing.crds import install_crds
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.sample_app import row_counts
from envbranch_testing.scenario import Project

EXAMPLES = REPO_ROOT / "examples"
EXAMPLE_ENVIRONMENTS = ("production", "staging", "feature-x", "snapshot", "pr-1234")
SERVER_EXAMPLE = EXAMPLES / "10-database-server.yaml"


def apply_example_server(cp: ControlPlane, pg: Postgres) -> None:
    """examples/10-database-server.yaml (the DatabaseServer `main` and its admin Secret) with this run's
    PostgreSQL address, port and admin credentials in place of its placeholders."""
    docs = [d for d in yaml.safe_load_all(SERVER_EXAMPLE.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["stringData"] = {"username": pg.admin.user, "password": pg.admin.password}
        elif doc["kind"] == "DatabaseServer":
            doc["spec"].update(host=pg.host, port=pg.port, sslMode="disable")
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def _fingerprint(value: str) -> str:
    """Enough to see two secrets differ without printing either."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:10]


def run_demo(console: Console, keep: bool = False) -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="envbranch-demo-"))
    with console.status("starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"):
        cp = ControlPlane(base_dir=work / "k8s")
        cp.start()
    pg = Postgres(base_dir=work / "pg")
    op: OperatorProcess | None = None
    try:
        with console.status("starting PostgreSQL 18"):
            pg.start()
        console.print(f"[bold]KUBECONFIG[/]={cp.kubeconfig}")
        console.print(cp.kubectl("version").stdout.strip())
        console.print(f"PostgreSQL {pg.version} on {pg.host}:{pg.port}\n")

        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        install_crds(api)
        cp.kubectl("apply", "-f", str(EXAMPLES / "00-project.yaml"))
        shop = Project(api, "shop", pg)
        with console.status("the shop application: database with rows, configuration of every category"):
            from envbranch_testing.sample_app import apply_shop_configuration, create_shop_database

            create_shop_database(pg, "shop")
            shop.create_namespace("shop-prod")
            apply_shop_configuration(api, "shop-prod")
            apply_example_server(cp, pg)
        op = OperatorProcess(cp.kubeconfig, work / "operator.log")
        with console.status("starting the operator (python -m envbranch)"):
            op.start()
            shop.wait_server_ready("main")
        # examples/ is everything a user applies; its server file was applied above with this run's
        # address and password in place of the placeholders, so it is not applied again here.
        console.print(f"[bold]$ kubectl apply -f examples/[/] (the placeholders of {SERVER_EXAMPLE.name} filled in)")
        rest = [f for f in sorted(EXAMPLES.glob("*.yaml")) if f != SERVER_EXAMPLE]
        console.print(cp.kubectl("apply", *(a for f in rest for a in ("-f", str(f)))).stdout)
        with console.status("waiting for every Environment to be Ready"):
            for name in EXAMPLE_ENVIRONMENTS:
                shop.wait_phase(name, "Active", "Failed", timeout=180)
        console.print("[bold]$ kubectl get env -A -o wide[/]")
        console.print(cp.kubectl("get", "env", "-A", "-o", "wide").stdout)
        console.print(cp.kubectl("get", "dbserver", "-A").stdout)
        failed = [n for n in EXAMPLE_ENVIRONMENTS if shop.status(n).get("phase") != "Active"]
        if failed:
            console.print(f"[red]not Active: {failed}[/]\n" + op.log()[-3000:])
            return 1
        _show_branches(console, shop, pg)
        _delete_feature_x(console, cp, shop, pg)
        console.print(f"\n[green]demo finished in {time.monotonic() - started:.0f}s[/]")
        if keep:
            console.print(f"left running: export KUBECONFIG={cp.kubeconfig}  (stop: kill the processes in {work})")
        return 0
    finally:
        if not keep:
            if op is not None:
                op.stop()
            pg.stop()
            cp.stop()


def _secret(shop: Project, ns: str, name: str) -> dict[str, str]:
    data = shop.core.read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _show_branches(console: Console, shop: Project, pg: Postgres) -> None:
    prod = row_counts(pg, "shop")
    table = Table(title="What each branch received")
    for col in ("environment", "mode", "strategy", "rows (customers/orders)", "copied", "skipped", "rotated",
                "credentials"):
        table.add_column(col)
    for name in ("staging", "feature-x"):
        st = shop.status(name)
        rows = row_counts(pg, st["database"]["name"])
        creds = _secret(shop, st["namespace"], st["credentialsSecret"])
        with psycopg.connect(creds["uri"]) as conn:
            who = conn.execute("SELECT current_user").fetchone()
        try:
            psycopg.connect(host=creds["host"], port=creds["port"], user=creds["username"],
                            password=creds["password"], dbname="shop").close()
            reach = "[red]reaches production![/]"
        except psycopg.OperationalError:
            reach = "production refused"
        rotated = []
        for rot in st.get("rotations") or []:
            for key in rot["keys"]:
                src = _secret(shop, "shop-prod", rot["secret"])[key]
                new = _secret(shop, st["namespace"], rot["secret"])[key]
                rotated.append(f"{rot['secret']}/{key}: {_fingerprint(src)} -> {_fingerprint(new)}")
        table.add_row(name, st["branchMode"], st["database"]["strategy"],
                      f"{rows['customers']}/{rows['orders']} (prod {prod['customers']}/{prod['orders']})",
                      ", ".join(f"{k}={v}" for k, v in st.get("copied", {}).items()) or "-",
                      ", ".join(s["name"] for s in st.get("skipped") or []) or "-",
                      "\n".join(rotated) or "-", f"login as {who[0] if who else '?'}; {reach}")
    console.print(table)


def _delete_feature_x(console: Console, cp: ControlPlane, shop: Project, pg: Postgres) -> None:
    st = shop.status("feature-x")
    uid = (shop.env("feature-x") or {})["metadata"]["uid"]
    console.print("[bold]$ kubectl delete env feature-x -n shop[/]")
    console.print(cp.kubectl("delete", "env", "feature-x", "-n", "shop", "--timeout=120s").stdout)
    shop.wait_gone("feature-x")
    from envbranch_testing.processes import wait_until

    def ns_gone() -> bool:
        try:
            shop.core.read_namespace(st["namespace"])
        except client.ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_until(ns_gone, timeout=120, what=f"namespace {st['namespace']} to be deleted")
    server = engine.Server(pg.host, pg.port, pg.admin.user, pg.admin.password)
    left = [t for t in engine.find_tagged(server) if t.uid == uid]
    console.print(f"feature-x: namespace {st['namespace']} gone, database {st['database']['name']} and its role "
                  f"gone ({'nothing left' if not left else f'LEFT: {left}'})")
