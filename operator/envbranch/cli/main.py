"""`envbranch`: branch, list, inspect, diff, export/import the configuration of, rename, refresh and delete
environments from a terminal (also the kubectl plugin `kubectl-envbranch`)."""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from kubernetes.client.rest import ApiException
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from urllib3.exceptions import HTTPError

from envbranch.api.common import (
    ANNOTATION_REFRESH,
    API_VERSION,
    CONDITION_READY,
    CONDITION_REFRESHED,
    CONDITION_STALLED,
    ENVIRONMENTS,
    GROUP,
    LABEL_CATEGORY,
    MASKINGPOLICIES,
    conditions_of,
    parse_rfc3339,
)
from envbranch.api.maskingpolicy import MaskingPolicySpec
from envbranch.branching import connection
from envbranch.branching import masking as masking_plan
from envbranch.branching.conditions import get_condition, is_true
from envbranch.branching.errors import BranchError
from envbranch.cli import bundle as bundles
from envbranch.cli import compare
from envbranch.kube import access, configuration, resources
from envbranch.kube.access import Need
from envbranch.kube.client import KubeClient
from envbranch.kube.configuration import Kind
from envbranch.postgres import EngineError
from envbranch.postgres import schema as pg_schema
from envbranch.postgres.masking import Masking, MaskingError, TableReads
from envbranch.postgres.tools import ToolsNotFound

app = typer.Typer(add_completion=False, no_args_is_help=True, help=(
    "Branch whole application environments (database + configuration) on Kubernetes.\n\n"
    "Examples:\n\n  envbranch branch Feature_Login --from production --mode System -n shop\n\n"
    "  envbranch list -n shop -o json\n\n  envbranch diff production feature-login -n shop\n\n"
    "  envbranch export production -n shop > bundle.yaml\n\n"
    "  envbranch import bundle.yaml --into feature-login -n shop --dry-run\n\n"
    "  envbranch delete feature-login -n shop --wait"))
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
COPY_FLAGS = {"file-providers": "fileProviders", "gateway-routes": "gatewayRoutes",
              "security-config": "securityConfig", "environment-variables": "environmentVariables"}


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


class CliError(Exception):
    pass


def _examples(*lines: str) -> str:
    return "\n\n".join(("Examples:", *(f"  {line}" for line in lines)))


NAMESPACE = typer.Option("default", "-n", "--namespace", help="the project namespace")
OUTPUT = typer.Option(Output.table, "-o", "--output", help="table, json or yaml")


def slug(display: str) -> str:
    """A display name such as Feature_Login as a metadata.name: feature-login."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", display.lower())).strip("-")[:63].strip("-")
    if not name:
        raise CliError(f"cannot derive a name from {display!r}: use letters or digits")
    return name


_KINDS = {"environments": "Environment", "databaseservers": "DatabaseServer", "configmaps": "ConfigMap",
          "secrets": "Secret", "namespaces": "Namespace"}


@contextmanager
def friendly_errors(namespace: str, name: str | None = None) -> Iterator[None]:
    """Turn failures into one line that says what to do, and exit 1."""
    try:
        yield
    except (CliError, bundles.BundleError, BranchError, EngineError, ToolsNotFound) as exc:
        _fail(getattr(exc, "message", None) or str(exc))
    except ApiException as exc:
        if exc.status == 404:
            msg = _not_found(exc, namespace, name)
        elif exc.status == 401:
            msg = f"unauthorized: the API server did not accept the credentials of your kubeconfig ({exc.reason})"
        elif exc.status == 403:
            msg = f"permission denied: {_api_message(exc)}"
        elif exc.status == 409:
            msg = f"conflict: {_api_message(exc)}"
        else:
            msg = f"the API server said {exc.status}: {_api_message(exc)}"
        _fail(msg)
    except (HTTPError, OSError) as exc:
        _fail(f"cannot reach the Kubernetes API server ({type(exc).__name__}); check KUBECONFIG and the cluster")


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(1) from None


def _not_found(exc: ApiException, namespace: str, name: str | None) -> str:
    """A missing object answers with a Status naming it; a missing resource type (CRDs not
    installed) with a bare `404 page not found`."""
    try:
        details = json.loads(exc.body or "{}").get("details") or {}
    except ValueError:
        details = {}
    if details.get("name") or details.get("kind"):
        kind = _KINDS.get(str(details.get("kind")), str(details.get("kind") or "object"))
        return f"{kind} {details.get('name') or name!r} not found in namespace {namespace!r}"
    return "the envbranch CRDs are not installed in this cluster (kubectl apply -f crds/)"


def _get(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return resources.read(kube, ENVIRONMENTS, namespace, name, group=GROUP)


def _print_data(data: Any, output: Output | Format) -> None:
    """Machine-readable output on stdout as it is: no wrapping, no markup."""
    if output == Output.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _age(created: str) -> str:
    import datetime as dt

    seconds = (dt.datetime.now(dt.UTC) - parse_rfc3339(created)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _phase_reason(st: dict[str, Any]) -> str:
    ready = get_condition(conditions_of({"status": st}), CONDITION_READY)
    return f"{ready.reason if ready else ''}: {ready.message if ready else ''}".strip(": ")


@app.command("list", epilog=_examples("envbranch list -n shop", "envbranch list -n shop -o json"))
def list_environments(namespace: str = NAMESPACE, output: Output = OUTPUT) -> None:
    """List the environments of a project."""
    with friendly_errors(namespace):
        items = resources.list_all(KubeClient(), ENVIRONMENTS, namespace, group=GROUP)
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
        table.add_row(*(escape(str(v)) for v in r.values()))
    out.print(table)


@app.command(epilog=_examples("envbranch status feature-login -n shop",
                              "envbranch status feature-login -n shop -o yaml"))
def status(name: str = typer.Argument(..., help="the Environment"), namespace: str = NAMESPACE,
           output: Output = OUTPUT) -> None:
    """Conditions, progress, copied and skipped configuration, rotations of one environment."""
    with friendly_errors(namespace, name):
        st = _get(KubeClient(), namespace, name).get("status") or {}
    if output != Output.table:
        _print_data(st, output)
        return
    out.print(f"[bold]{escape(name)}[/]: {st.get('phase', 'Pending')}  namespace={st.get('namespace', '-')}  "
              f"database={(st.get('database') or {}).get('name', '-')} "
              f"({(st.get('database') or {}).get('strategy', '-')})")
    table = Table("CONDITION", "STATUS", "REASON", "MESSAGE", box=None)
    for c in st.get("conditions") or []:
        table.add_row(c["type"], c["status"], escape(c.get("reason", "")), escape(c.get("message", "")))
    out.print(table)
    for key in ("copied", "skipped", "rotations"):
        if st.get(key):
            out.print(f"{key}: {escape(json.dumps(st[key]))}")


@app.command(epilog=_examples(
    "envbranch branch Feature_Login --from production --mode System -n shop",
    "envbranch branch staging --from production --mode Full --copy file-providers,environment-variables -n shop",
    "envbranch branch qa --from production --dry-run -o json", "envbranch branch qa --from production --no-wait"))
def branch(name: str = typer.Argument(..., help="display name or name of the new environment"),
           source: str = typer.Option(..., "--from", help="the Environment to branch from"),
           mode: str = typer.Option("System", "--mode", help="Full (schema + data) or System (schema only)"),
           copy: str = typer.Option("", "--copy", help=f"comma-separated: {', '.join(COPY_FLAGS)}"),
           namespace: str = NAMESPACE,
           dry_run: bool = typer.Option(False, "--dry-run", help="print the manifest, create nothing"),
           no_wait: bool = typer.Option(False, "--no-wait", help="return once created"),
           timeout: float = typer.Option(600, help="seconds to wait for Active"),
           output: Format = typer.Option(Format.yaml, "-o", "--output", help="--dry-run manifest as yaml or json"),
           ) -> None:
    """Create a branch and follow its steps until it is Active (non-zero exit when it fails).

    NAME may be a display name such as Feature_Login: the Environment is then named feature-login
    and keeps Feature_Login as its display name. A name already taken is refused (conflict)."""
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
            _print_data(manifest, output)
            return
        kube = KubeClient()
        resources.create(kube, ENVIRONMENTS, namespace, manifest, group=GROUP)
        err.print(f"environment {slug(name)} created in {namespace}")
        if no_wait:
            return
        final = _follow(kube, namespace, slug(name), timeout)
    if final.get("phase") != "Active":
        if final.get("phase") == "Failed":
            _fail(f"branch failed: {_phase_reason(final)}")
        _fail(f"{slug(name)} is not Active after {timeout:.0f}s (phase {final.get('phase', 'Pending')}"
              f"{': ' + _phase_reason(final) if _phase_reason(final) else ''})")
    out.print(f"[green]{slug(name)} is Active[/]: database {(final.get('database') or {}).get('name')}, "
              f"credentials in Secret {final.get('credentialsSecret')} (namespace {final.get('namespace')})")


def _follow(kube: KubeClient, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  console=err, transient=True) as bar:
        task = bar.add_task("pending", total=100)
        while time.monotonic() < deadline:
            st = _get(kube, namespace, name).get("status") or {}
            prog = st.get("progress") or {}
            bar.update(task, completed=prog.get("percent", 0), description=f"{st.get('phase', 'Pending')}: "
                       f"{prog.get('step', 'waiting')}")
            stalled = is_true(conditions_of({"status": st}), CONDITION_STALLED)
            if st.get("phase") in ("Active", "Failed") or stalled:
                return st
            time.sleep(0.5)  # polling interval of the progress display
    return _get(kube, namespace, name).get("status") or {}


@app.command(epilog=_examples("envbranch rename feature-login Login_V2 -n shop"))
def rename(name: str = typer.Argument(..., help="the Environment"),
           display: str = typer.Argument(..., help="the new display name"), namespace: str = NAMESPACE) -> None:
    """Change an environment's display name."""
    with friendly_errors(namespace, name):
        resources.patch(KubeClient(), ENVIRONMENTS, namespace, name, {"spec": {"displayName": display}}, group=GROUP)
    out.print(f"{escape(name)} is now {escape(repr(display))}")


def refresh_token() -> str:
    """A value envbranch.io/refresh has never had: the time and a few random characters."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"


@app.command(epilog=_examples("envbranch refresh snapshot -n shop", "envbranch refresh snapshot -n shop --wait"))
def refresh(name: str = typer.Argument(..., help="the Environment (a branch)"), namespace: str = NAMESPACE,
            wait: bool = typer.Option(False, "--wait", help="return when the refresh is done or has failed"),
            timeout: float = typer.Option(3600, help="seconds to wait with --wait")) -> None:
    """Re-clone a branch's database from its source in place (same role, password, Secret, children):
    sets a new envbranch.io/refresh token."""
    token = refresh_token()
    with friendly_errors(namespace, name):
        kube = KubeClient()
        resources.patch(kube, ENVIRONMENTS, namespace, name,
                        {"metadata": {"annotations": {ANNOTATION_REFRESH: token}}}, group=GROUP)
        err.print(f"refresh {token} of {name} requested")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = _get(kube, namespace, name).get("status") or {}
            state = st.get("refresh") or {}
            if state.get("token") == token and state.get("stage") in ("Done", "Failed"):
                break
            time.sleep(0.5)  # polling interval, as _follow
        else:
            raise CliError(f"refresh {token} of {name} is not done after {timeout:.0f}s")
    if state["stage"] == "Failed":
        refreshed = get_condition(conditions_of({"status": st}), CONDITION_REFRESHED)
        _fail(f"refresh failed: {refreshed.message if refreshed else 'see envbranch status'}")
    last = st.get("lastRefresh") or {}
    out.print(f"[green]{escape(name)} refreshed[/]: {last.get('strategy')}, {last.get('bytes')} bytes in "
              f"{last.get('seconds')}s; clients cut off {last.get('cutoffSeconds')}s")


@app.command(epilog=_examples("envbranch delete feature-login -n shop",
                              "envbranch delete feature-login -n shop --wait"))
def delete(name: str = typer.Argument(..., help="the Environment"), namespace: str = NAMESPACE,
           wait: bool = typer.Option(False, "--wait", help="return when everything is removed"),
           timeout: float = typer.Option(300)) -> None:
    """Delete an environment (with deletionPolicy Delete: its database, role and namespace too)."""
    with friendly_errors(namespace, name):
        kube = KubeClient()
        resources.remove(kube, ENVIRONMENTS, namespace, name, group=GROUP)
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            try:
                _get(kube, namespace, name)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            time.sleep(0.5)
        else:
            if wait:
                raise CliError(f"{name} still exists after {timeout:.0f}s")
    out.print(f"{name} deleted" if wait else f"{name} deletion requested")


# -- diff, export, import ----------------------------------------------------------------------------
def _runtime_namespace(env: dict[str, Any]) -> str:
    st = env.get("status") or {}
    if not st.get("namespace"):
        raise CliError(f"Environment {env['metadata']['name']!r} has no namespace yet "
                       f"(phase {st.get('phase', 'Pending')})")
    return str(st["namespace"])


def _schema_of(kube: KubeClient, project: str, env: dict[str, Any]) -> tuple[str, str]:
    """(database name, normalised schema) of an environment, read with the DatabaseServer's admin role."""
    db = (env.get("status") or {}).get("database") or {}
    if not db.get("server") or not db.get("name"):
        raise CliError(f"Environment {env['metadata']['name']!r} has no database yet "
                       f"(phase {(env.get('status') or {}).get('phase', 'Pending')})")
    server = connection.read_server(kube, project, db["server"])
    return db["name"], pg_schema.normalise_schema(pg_schema.schema_dump(server, db["name"]), db["name"])


def _diff_needs(project: str, envs: tuple[dict[str, Any], ...], schema: bool, config: bool) -> list[Need]:
    """`diff` reads the schemas with the DatabaseServer's admin Secret (so it needs to read Secrets in
    the project) and the configuration from each runtime namespace (ConfigMaps and Secrets there)."""
    needs = [Need("get", "secrets", project, "the DatabaseServer's admin Secret, to read the schemas")
             ] if schema else []
    if config:
        for env in envs:
            ns = _runtime_namespace(env)
            needs += [Need("list", kind, ns, f"the configuration of {env['metadata']['name']}")
                      for kind in ("configmaps", "secrets")]
    return needs


def _require(kube: KubeClient, needs: list[Need], hint: str) -> None:
    lacking = access.missing(kube, needs)
    if lacking:
        raise CliError("you may not " + "; ".join(n.describe() for n in lacking) + f": {hint}")


def _categorised(kube: KubeClient, env: dict[str, Any]) -> list[tuple[Kind, dict[str, Any]]]:
    return configuration.list_both(kube, _runtime_namespace(env), LABEL_CATEGORY)


@app.command(epilog=_examples(
    "envbranch diff production feature-login -n shop", "envbranch diff production feature-login -n shop -o json",
    "envbranch diff staging feature-login -n shop --no-schema --exit-code"))
def diff(a: str = typer.Argument(..., help="the first Environment"),
         b: str = typer.Argument(..., help="the second Environment"), namespace: str = NAMESPACE,
         output: Output = OUTPUT,
         schema: bool = typer.Option(True, "--schema/--no-schema", help="compare the database schemas"),
         config: bool = typer.Option(True, "--config/--no-config", help="compare the configuration"),
         exit_code: bool = typer.Option(False, "--exit-code", help="exit 1 when they differ (as git diff)")) -> None:
    """Schema differences of two environments' databases (pg_dump --schema-only, normalised:
    owners, database names, envbranch tags and SET lines left out) and configuration differences
    by category. Secret values are never shown: only which keys differ."""
    with friendly_errors(namespace):
        kube = KubeClient()
        env_a, env_b = _get(kube, namespace, a), _get(kube, namespace, b)
        _require(kube, _diff_needs(namespace, (env_a, env_b), schema, config),
                 "leave out what you may not read with --no-schema or --no-config")
        data: dict[str, Any] = {"a": a, "b": b}
        if schema:
            db_a, schema_a = _schema_of(kube, namespace, env_a)
            db_b, schema_b = _schema_of(kube, namespace, env_b)
            text = compare.schema_diff(schema_a, schema_b, f"{a} ({db_a})", f"{b} ({db_b})")
            data["schema"] = {"identical": not text, "diff": text}
        if config:
            data["configuration"] = compare.config_diff(_categorised(kube, env_a), _categorised(kube, env_b))
    if output != Output.table:
        _print_data(data, output)
    else:
        _print_diff(data)
    differs = (schema and not data["schema"]["identical"]) or (config and compare.config_differs(
        data["configuration"]))
    if exit_code and differs:
        raise typer.Exit(1)


def _print_diff(data: dict[str, Any]) -> None:
    a, b = data["a"], data["b"]
    if "schema" in data:
        if data["schema"]["identical"]:
            out.print("[bold]schema[/]: identical")
        else:
            out.print("[bold]schema[/]:")
            for line in data["schema"]["diff"].splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                out.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    if "configuration" in data:
        if not data["configuration"]:
            out.print("[bold]configuration[/]: none in either environment")
            return
        out.print(f"[bold]configuration[/] ({escape(a)} → {escape(b)}):")
        states = {compare.ONLY_IN_A: f"only in {a}", compare.ONLY_IN_B: f"only in {b}", compare.SAME: "same"}
        width = max(len(f"{e['kind']}/{e['name']}") for es in data["configuration"].values() for e in es)
        for category, entries in data["configuration"].items():
            out.print(f"  {category}", markup=False, highlight=False)
            for e in entries:
                line = f"    {e['kind'] + '/' + e['name']:<{width}}  {states.get(e['state']) or _details(e)}"
                out.print(line, markup=False, highlight=False, soft_wrap=True)


def _details(entry: dict[str, Any]) -> str:
    """What differs in one object: ConfigMap values old → new; for a Secret only key names."""
    keys, values = entry.get("keys") or {}, entry.get("values") or {}
    parts = [f"added {', '.join(keys['added'])}"] if keys.get("added") else []
    if keys.get("removed"):
        parts.append(f"removed {', '.join(keys['removed'])}")
    for key in keys.get("changed") or []:
        parts.append(f"{key} {values[key]['a']!r} → {values[key]['b']!r}" if key in values
                     else f"{key} changed (value hidden)")
    if entry.get("type"):
        parts.append(f"type {entry['type']['a']} → {entry['type']['b']}")
    return "differs: " + "; ".join(parts)


@app.command(epilog=_examples("envbranch export production -n shop > bundle.yaml",
                              "envbranch export production -n shop -o json > bundle.json"))
def export(name: str = typer.Argument(..., help="the Environment"), namespace: str = NAMESPACE,
           output: Format = typer.Option(Format.yaml, "-o", "--output", help="yaml or json")) -> None:
    """Write an environment's configuration of every copyable category (file-providers,
    gateway-routes, security-config, oauth-clients, environment-variables; never auth-providers) as
    one ConfigurationBundle. Server-set metadata is left out; Secret values are never exported:
    each reads <redacted>."""
    with friendly_errors(namespace, name):
        kube = KubeClient()
        env = _get(kube, namespace, name)
        ns = _runtime_namespace(env)
        bundle = bundles.export_bundle(_categorised(kube, env), project=namespace, environment=name, namespace=ns)
    if output == Format.yaml:
        sys.stdout.write(bundles.redaction_note(bundle))
    _print_data(bundle.dump(), output)


@app.command("import", epilog=_examples(
    "envbranch import bundle.yaml --into feature-login -n shop --dry-run",
    "envbranch import bundle.yaml --into feature-login -n shop",
    "envbranch export production -n shop | envbranch import - --into feature-login -n shop -o json"))
def import_bundle(file: str = typer.Argument(..., help="the bundle (YAML or JSON), - for stdin"),
                  into: str = typer.Option(..., "--into", help="the Environment whose configuration it replaces"),
                  namespace: str = NAMESPACE,
                  dry_run: bool = typer.Option(False, "--dry-run", help="show what would change, change nothing"),
                  output: Output = OUTPUT) -> None:
    """Replace an environment's copyable configuration with a bundle: create and update its
    objects, delete the copyable-category objects it does not hold. A Secret key that reads
    <redacted> keeps the target's value (refused when the target has none). An invalid bundle
    is refused and nothing changes."""
    with friendly_errors(namespace, into):
        text = sys.stdin.read() if file == "-" else _read(file)
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CliError(f"{file} is not YAML or JSON: {str(exc).splitlines()[0]}") from None
        bundle = bundles.parse_bundle(document)
        kube = KubeClient()
        env = _get(kube, namespace, into)
        ns = _runtime_namespace(env)
        plan = bundles.plan_import(bundle, configuration.list_both(kube, ns), into)
        if not dry_run:
            _apply(kube, ns, plan)
    summary = [c.summary() for c in plan]
    if output != Output.table:
        _print_data({"environment": into, "namespace": ns, "dryRun": dry_run, "changes": summary}, output)
        return
    table = Table("ACTION", "OBJECT", "CATEGORY", "KEYS", box=None)
    for c in summary:
        keys = "; ".join(f"{what}: {', '.join(names)}" for what, names in (c.get("keys") or {}).items())
        table.add_row(c["action"], f"{c['kind']}/{c['name']}", c["category"],
                      escape(keys + ("; labels/annotations/type" if c.get("metadata") else "")))
    out.print(table)
    counts = {a: sum(1 for c in plan if c.action == a) for a in ("create", "update", "delete")}
    verb = "would" if dry_run else "did"
    out.print(f"{'dry run: ' if dry_run else ''}{into} ({ns}): {verb} create {counts['create']}, update "
              f"{counts['update']}, delete {counts['delete']}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def _apply(kube: KubeClient, namespace: str, plan: list[bundles.Change]) -> None:
    for change in plan:
        if change.action == "delete":
            configuration.delete(kube, change.kind, namespace, change.name)
        elif change.action == "create" or (change.action == "update" and change.recreate):
            if change.recreate:
                configuration.delete(kube, change.kind, namespace, change.name)
            if not configuration.create(kube, change.kind, namespace, change.body):
                raise CliError(f"conflict: {change.kind} {change.name!r} appeared in {namespace} meanwhile; "
                               "run the import again")
        elif change.action == "update":
            body = {**change.body, "metadata": {**change.body["metadata"],
                                                "resourceVersion": change.resource_version}}
            configuration.replace(kube, change.kind, namespace, change.name, body)


# -- masking -----------------------------------------------------------------------------------------
masking_app = typer.Typer(no_args_is_help=True, help="Masked branches: check a MaskingPolicy before anyone branches.")
app.add_typer(masking_app, name="masking")


@masking_app.command("check", epilog=_examples("envbranch masking check pii --against production -n shop",
                                                "envbranch masking check pii --against production -n shop -o json"))
def masking_check(policy: str = typer.Argument(..., help="the MaskingPolicy"),
                  against: str = typer.Option(..., "--against", help="the Environment a masked branch would copy"),
                  namespace: str = NAMESPACE, output: Output = OUTPUT) -> None:
    """The columns of AGAINST's database that look personal and that POLICY leaves unclassified (the
    list a branch fails with, UnclassifiedColumns), and whether its rules fit their columns. Exit 1
    when a branch would fail. Reads the schema with the DatabaseServer's admin Secret; never the key."""
    with friendly_errors(namespace):
        kube = KubeClient()
        body = resources.read(kube, MASKINGPOLICIES, namespace, policy, group=GROUP)
        env = _get(kube, namespace, against)
        db = (env.get("status") or {}).get("database") or {}
        if not db.get("server") or not db.get("name"):
            raise CliError(f"Environment {against!r} has no database yet")
        _require(kube, [Need("get", "secrets", namespace, "the DatabaseServer's admin Secret, to read the schema")],
                 "ask a project owner to run the check")
        spec = MaskingPolicySpec.model_validate(body.get("spec") or {})
        columns, found = masking_plan.classify_source(
            connection.read_server(kube, namespace, db["server"]), spec, db["name"])
        try:
            masked = TableReads(Masking(policy, b"", masking_plan.resolved_masks(spec)), columns).column_count
            problem = None
        except MaskingError as exc:
            masked, problem = 0, str(exc)
    fails = bool(problem) or (bool(found) and spec.unclassified == "Refuse")
    data = {"policy": policy, "against": against, "database": db["name"], "maskedColumns": masked,
            "unclassified": found, "unclassifiedPolicy": spec.unclassified, "ruleError": problem,
            "branchWouldFail": fails}
    if output != Output.table:
        _print_data(data, output)
    else:
        _print_masking_check(data)
    if fails:
        raise typer.Exit(1)


def _print_masking_check(data: dict[str, Any]) -> None:
    head = f"MaskingPolicy {data['policy']} against {data['against']} ({data['database']})"
    out.print(f"{escape(head)}: {data['maskedColumns']} columns masked")
    if data["ruleError"]:
        out.print(f"[red]rule error:[/] {escape(data['ruleError'])}")
    for column in data["unclassified"]:
        out.print(f"  unclassified: {escape(column)}")
    if not data["unclassified"]:
        out.print("no unclassified personal columns")
    elif data["unclassifiedPolicy"] == "Allow":
        out.print("the policy allows them (unclassified: Allow): they are copied as they are")
    else:
        out.print("[red]a masked branch would fail (UnclassifiedColumns)[/]: add rules or notPersonal entries")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=_examples("envbranch operator --namespace shop --liveness http://0.0.0.0:8080/healthz"))
def operator(ctx: typer.Context) -> None:
    """Run the operator (same as `python -m envbranch`; --help lists its options)."""
    from envbranch.main import main

    raise typer.Exit(main(ctx.args))
