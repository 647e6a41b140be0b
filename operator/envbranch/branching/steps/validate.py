"""Validate and plan: source, server and names resolved before anything is made.

Waiting (not yet possible) and Invalid (never possible as asked) are raised here; nothing is
created, except that the source's UID is pinned on first sight."""

from __future__ import annotations

from typing import Any

from envbranch.api import common
from envbranch.branching import database, masking
from envbranch.branching.conditions import get_condition
from envbranch.branching.errors import Invalid, Waiting
from envbranch.branching.run import Run
from envbranch.branching.step import Plan
from envbranch.kube import resources

NAME = "validate"


def plan(run: Run) -> Plan:
    spec, db_spec = run.spec, run.spec.database
    check_display_name(run)
    parent: dict[str, Any] | None = None
    source_server = source_database = None
    if spec.source:
        parent = source_of(run, spec.source)
        pdb = (parent.get("status") or {}).get("database") or {}
        source_server, source_database = pdb.get("server"), pdb.get("name")
        if not source_server or not source_database:
            raise Invalid("InvalidSource", f"source Environment {spec.source!r} reports no database")
        server_name = db_spec.server_ref if db_spec and db_spec.server_ref else source_server
    else:
        server_name = db_spec.server_ref if db_spec and db_spec.server_ref else only_server(run)
    ns = spec.namespace or common.namespace_name(run.project, run.name)
    if len(ns) > 63:
        raise Invalid("NameTooLong", f"the environment namespace {ns!r} would be {len(ns)} characters; "
                      "Kubernetes allows 63: shorten the project or environment name")
    if len(common.credentials_secret_name(run.name)) > 253:
        raise Invalid("NameTooLong", "the environment name is too long for its credentials Secret")
    server = require_server_ready(run, server_name)
    if db_spec and db_spec.name:
        check_adoptable(server, db_spec.name)
        dbname, role = db_spec.name, None
    else:
        dbname = run.named("Database", server_name) or database.branch_database_name(run.project, run.name)
        role = run.named("Role", server_name) or database.branch_role_name(run.project, run.name)
    mask_plan = masking.plan_masking(run.ctx, run.project, db_spec.masking if db_spec else None, spec.mode, parent,
                                     (source_server, source_database))
    if mask_plan and mask_plan.engine and db_spec and db_spec.strategy == "Template":
        raise Invalid("MaskingNeedsDump", "strategy Template copies the source's rows as they are: a masked "
                      "branch of an unmasked source is always a Dump (use Auto or Dump)")
    return Plan(namespace=ns, adopt_namespace=bool(spec.namespace), server_name=server_name, database=dbname,
                adopt_database=bool(db_spec and db_spec.name), role=role,
                parent=parent, source_server=source_server, source_database=source_database, masking=mask_plan)


def source_of(run: Run, source: str) -> dict[str, Any]:
    """The source Environment, pinned by UID, once it exists and is Active."""
    if source == run.name:
        raise Invalid("InvalidSource", "spec.source names this Environment itself")
    parent = resources.get(run.ctx.kube, resources.ENVIRONMENTS, run.project, source)
    if parent is None:
        raise Waiting("SourceNotFound", f"waiting for source Environment {source!r} "
                      f"to exist in namespace {run.project}", run.ctx.settings.source_wait)
    pin_parent(run, parent)
    phase = (parent.get("status") or {}).get("phase")
    if phase != common.PHASE_ACTIVE:
        raise Waiting("SourceNotReady", f"waiting for source Environment {source!r} to be Active "
                      f"(it is {phase or 'Pending'})", run.ctx.settings.source_wait)
    return parent


def check_display_name(run: Run) -> None:
    wanted = run.spec.display_name
    if not wanted:
        return
    for other in resources.list_in(run.ctx.kube, resources.ENVIRONMENTS, run.project):
        meta = other["metadata"]
        if meta["uid"] != run.uid and (other.get("spec") or {}).get("displayName", "").lower() == wanted.lower():
            raise Invalid("DisplayNameTaken", f"display name {wanted!r} is already used by Environment "
                          f"{meta['name']!r} in project {run.project}")


def only_server(run: Run) -> str:
    servers = resources.list_in(run.ctx.kube, resources.DATABASESERVERS, run.project)
    if len(servers) != 1:
        raise Invalid("ServerRequired", "spec.database.serverRef is required: namespace "
                      f"{run.project} has {len(servers)} DatabaseServers")
    return str(servers[0]["metadata"]["name"])


def pin_parent(run: Run, parent: dict[str, Any]) -> None:
    """The source is the object first seen under its name: a source deleted and recreated (say as a
    root adopting someone else's namespace) is never copied from."""
    parent_uid = parent["metadata"]["uid"]
    pinned = run.status.parent_uid
    if pinned is None:
        run.write(parent_uid=parent_uid)
    elif pinned != parent_uid:
        raise Invalid("SourceReplaced", f"source Environment {run.spec.source!r} was deleted and recreated "
                      f"(UID {pinned} is now {parent_uid}): nothing is copied from the new object; "
                      "delete this branch and create it again to branch from it")


def check_adoptable(server: dict[str, Any], name: str) -> None:
    listed = (server.get("spec") or {}).get("adoptableDatabases") or []
    if name not in listed:
        raise Invalid("AdoptionNotAllowed", f"database {name!r} is not in spec.adoptableDatabases of "
                      f"DatabaseServer {server['metadata']['name']!r}: a project owner lists the databases "
                      "a root may adopt")


def require_server_ready(run: Run, server_name: str) -> dict[str, Any]:
    server = resources.get(run.ctx.kube, resources.DATABASESERVERS, run.project, server_name)
    if server is None:
        raise Waiting("ServerNotFound", f"waiting for DatabaseServer {server_name!r} in namespace "
                      f"{run.project}", run.ctx.settings.source_wait)
    ready = get_condition(common.conditions_of(server), common.CONDITION_READY)
    if not ready or ready.status != "True":
        why = ready.message if ready else "not probed yet"
        raise Waiting("ServerNotReady", f"waiting for DatabaseServer {server_name!r} to be Ready: {why}",
                      run.ctx.settings.source_wait)
    return server
