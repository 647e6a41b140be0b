"""`envbranch`: branch, list, inspect, rename and delete environments from a terminal."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import typer
import yaml
from kubernetes.client.rest import ApiException
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from urllib3.exceptions import HTTPError

from envbranch.api.common import API_VERSION, GROUP, VERSION
from envbranch.kube import client as kube

app = typer.Typer(add_completion=False, no_args_is_help=True, help=(
    "Branch whole application environments (database + configuration) on Kubernetes.\n\n"
    "Examples:\n\n  envbranch branch Feature_Login --from production --mode System -n shop\n\n"
    "  envbranch list -n shop -o json\n\n  envbranch delete feature-login -n shop --wait"))
out = Console()
err = Console(stderr=True)
COPY_FLAGS = {"file-providers": "fileProviders", "gateway-routes": "gatewayRoutes",
              "security-config": "securityConfig", "environment-variables": "environmentVariables"}


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class CliError(Exception):
    pass


def slug(display: str) -> str:
    """A display name such as Feature_Login as a metadata.name: feature-login."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", display.lower())).strip("-")[:63].strip("-")
    if not name:
        raise CliError(f"cannot derive a name from {display!r}: use letters or digits")
    return name


@contextmanager
def friendly_errors(namespace: str, name: str | None = None) -> Iterator[None]:
    """Turn API failures into one line that says what to do."""
    try:
        yield
    except CliError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except ApiException as exc:
        if exc.status == 404 and name:
            msg = f"Environment {name!r} not found in namespace {namespace!r}"
        elif exc.status == 404:
            msg = "the envbranch CRDs are not installed in this cluster (kubectl apply -f crds/)"
        elif exc.status == 403:
            msg = f"permission denied: {_api_message(exc)}"
        elif exc.status == 409:
            msg = f"conflict: {_api_message(exc)}"
        else:
            msg = f"the API server said {exc.status}: {_api_message(exc)}"
        err.print(f"[red]error:[/] {msg}")
        raise typer.Exit(1) from None
    except (HTTPError, OSError) as exc:
        err.print(f"[red]error:[/] cannot reach the Kubernetes API server ({type(exc).__name__}); check KUBECONFIG")
        raise typer.Exit(1) from None


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _get(namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, "environments", name))


def _print_data(data: Any, output: Output) -> None:
    if output == Output.json:
        out.print_json(json.dumps(data))
    else:
        out.print(yaml.safe_dump(data, sort_keys=False), end="")


def _age(created: str) -> str:
    import datetime as dt

    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@app.command("list")
def list_environments(namespace: str = typer.Option("default", "-n", "--namespace", help="the project namespace"),
                      output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """List the environments of a project."""
    with friendly_errors(namespace):
        items = kube.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, "environments")["items"]
    rows = [{"name": i["metadata"]["name"], "displayName": i["spec"].get("displayName", ""),
             "source": i["spec"].get("source", ""), "mode": i["spec"].get("mode", ""),
             "phase": (i.get("status") or {}).get("phase", ""),
             "database": ((i.get("status") or {}).get("database") or {}).get("name", ""),
             "age": _age(i["metadata"]["creationTimestamp"])} for i in items]
    if output != Output.table:
        _print_data(rows, output)
        return
    table = Table("NAME", "DISPLAY NAME", "SOURCE", "MODE", "PHASE", "DATABASE", "AGE", box=None)
    for r in rows:
        table.add_row(*r.values())
    out.print(table)


@app.command()
def status(name: str, namespace: str = typer.Option("default", "-n", "--namespace"),
           output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Conditions, progress, copied and skipped configuration, rotations of one environment."""
    with friendly_errors(namespace, name):
        st = _get(namespace, name).get("status") or {}
    if output != Output.table:
        _print_data(st, output)
        return
    out.print(f"[bold]{name}[/]: {st.get('phase', 'Pending')}  namespace={st.get('namespace', '-')}  "
              f"database={(st.get('database') or {}).get('name', '-')} "
              f"({(st.get('database') or {}).get('strategy', '-')})")
    table = Table("CONDITION", "STATUS", "REASON", "MESSAGE", box=None)
    for c in st.get("conditions") or []:
        table.add_row(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
    out.print(table)
    for key in ("copied", "skipped", "rotations"):
        if st.get(key):
            out.print(f"{key}: {json.dumps(st[key])}")


@app.command()
def branch(name: str = typer.Argument(..., help="display name or name of the new environment"),
           source: str = typer.Option(..., "--from", help="the Environment to branch from"),
           mode: str = typer.Option("System", "--mode", help="Full (schema + data) or System (schema only)"),
           copy: str = typer.Option("", "--copy", help=f"comma-separated: {', '.join(COPY_FLAGS)}"),
           namespace: str = typer.Option("default", "-n", "--namespace"),
           dry_run: bool = typer.Option(False, "--dry-run", help="print the manifest, create nothing"),
           no_wait: bool = typer.Option(False, "--no-wait", help="return once created"),
           timeout: float = typer.Option(600, help="seconds to wait for Active")) -> None:
    """Create a branch and follow its steps until it is Active (non-zero exit when it fails)."""
    with friendly_errors(namespace):
        if mode not in ("Full", "System"):
            raise CliError("--mode must be Full or System")
        unknown = [c for c in filter(None, copy.split(",")) if c.strip() not in COPY_FLAGS]
        if unknown:
            raise CliError(f"unknown copy flag(s) {unknown}: use {', '.join(COPY_FLAGS)}")
        spec: dict[str, Any] = {"source": source, "mode": mode}
        if name != slug(name):
            spec["displayName"] = name
        flags = {COPY_FLAGS[c.strip()]: True for c in filter(None, copy.split(","))}
        if flags:
            spec["copy"] = flags
        manifest = {"apiVersion": API_VERSION, "kind": "Environment",
                    "metadata": {"name": slug(name), "namespace": namespace}, "spec": spec}
        if dry_run:
            out.print(yaml.safe_dump(manifest, sort_keys=False), end="")
            return
        kube.custom().create_namespaced_custom_object(GROUP, VERSION, namespace, "environments", manifest)
        err.print(f"environment {slug(name)} created in {namespace}")
        if no_wait:
            return
        final = _follow(namespace, slug(name), timeout)
    if final.get("phase") != "Active":
        ready: dict[str, Any] = next((c for c in final.get("conditions") or [] if c["type"] == "Ready"), {})
        err.print(f"[red]branch failed:[/] {ready.get('reason', '')}: {ready.get('message', 'timed out')}")
        raise typer.Exit(1)
    out.print(f"[green]{slug(name)} is Active[/]: database {(final.get('database') or {}).get('name')}, "
              f"credentials in Secret {final.get('credentialsSecret')} (namespace {final.get('namespace')})")


def _follow(namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  console=err, transient=True) as bar:
        task = bar.add_task("pending", total=100)
        while time.monotonic() < deadline:
            st = _get(namespace, name).get("status") or {}
            prog = st.get("progress") or {}
            bar.update(task, completed=prog.get("percent", 0), description=f"{st.get('phase', 'Pending')}: "
                       f"{prog.get('step', 'waiting')}")
            stalled = any(c["type"] == "Stalled" and c["status"] == "True" for c in st.get("conditions") or [])
            if st.get("phase") == "Active" or stalled:
                return st
            time.sleep(0.5)  # polling interval of the progress display
    return _get(namespace, name).get("status") or {}


@app.command()
def rename(name: str, display: str, namespace: str = typer.Option("default", "-n", "--namespace")) -> None:
    """Change an environment's display name."""
    with friendly_errors(namespace, name):
        kube.custom().patch_namespaced_custom_object(GROUP, VERSION, namespace, "environments", name,
                                                     {"spec": {"displayName": display}})
    out.print(f"{name} is now {display!r}")


@app.command()
def delete(name: str, namespace: str = typer.Option("default", "-n", "--namespace"),
           wait: bool = typer.Option(False, "--wait", help="return when everything is removed"),
           timeout: float = typer.Option(300)) -> None:
    """Delete an environment (with deletionPolicy Delete: its database, role and namespace too)."""
    with friendly_errors(namespace, name):
        kube.custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, "environments", name)
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            try:
                _get(namespace, name)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            time.sleep(0.5)
        else:
            if wait:
                raise CliError(f"{name} still exists after {timeout:.0f}s")
    out.print(f"{name} deleted" if wait else f"{name} deletion requested")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def operator(ctx: typer.Context) -> None:
    """Run the operator (same as `python -m envbranch`; --help lists its options)."""
    from envbranch.main import main

    raise typer.Exit(main(ctx.args))
