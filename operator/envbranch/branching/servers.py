"""DatabaseServer reconcile: probe the server and report Ready, version, strategies and its replicas' health."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.common import Condition, now_rfc3339
from envbranch.api.databaseserver import DatabaseServerSpec
from envbranch.branching import connection, server_replicas
from envbranch.branching.conditions import get_condition, is_true, set_condition
from envbranch.branching.errors import BranchError, Waiting
from envbranch.kube import events, resources
from envbranch.kube.client import KubeClient

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

log = logging.getLogger(__name__)

# Held on a DatabaseServer's admin Secret (and its spec.tls Secret) while the server exists:
# deleting a whole project namespace deletes Secrets at once, and the Environments' finalizers
# still need the password (and the CA and client certificate) to drop their databases and roles.
SECRET_FINALIZER = "envbranch.io/database-server"  # noqa: S105 - a finalizer name, not a secret


def probe_server(ctx: OperatorContext, body: dict[str, Any]) -> bool:
    """Probe and write status when something changed. True when the server is Ready. One probe of a
    server at a time, each against its stored status: the change handler and the timer can both hold
    the same old body, and would each announce the same flip."""
    meta = body["metadata"]
    with ctx.probe_lock(str(meta["uid"])):
        current = resources.get(ctx.kube, resources.DATABASESERVERS, meta["namespace"], meta["name"])
        if current is None or current["metadata"].get("uid") != meta["uid"]:
            return False  # deleted (or replaced) since this event
        return _probe(ctx, current)


def _probe(ctx: OperatorContext, body: dict[str, Any]) -> bool:
    meta = body["metadata"]
    protect_admin_secret(ctx.kube, body)
    status: dict[str, Any] = dict(body.get("status") or {})
    generation = int(meta.get("generation") or 1)
    ok, reason, message, caps = connection.probe(ctx, meta["namespace"], meta["name"])
    had = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conds = set_condition(had, common.CONDITION_READY, ok, reason, message, generation)
    conds, replicas = _probe_replicas(ctx, body, conds, generation, primary_ready=ok)
    wanted: dict[str, Any] = {"conditions": [c.model_dump(by_alias=True, exclude_none=True) for c in conds],
                              "observedGeneration": generation, **{k: _as_stored(v) for k, v in caps.items()},
                              **replicas}
    changed = {k: v for k, v in wanted.items() if status.get(k) != v}
    if changed:
        changed["lastProbeTime"] = now_rfc3339()
        resources.patch_status(ctx.kube, resources.DATABASESERVERS, meta["namespace"], meta["name"], changed)
        if ok != is_true(had, common.CONDITION_READY) or "conditions" not in status:
            events.emit(ctx.kube, body, reason, message, warning=not ok)
        _tell_replicas_change(ctx, body, had, conds, status.get("replicas"), wanted.get("replicas"))
    return ok


def _probe_replicas(ctx: OperatorContext, body: dict[str, Any], conds: list[Condition], generation: int, *,
                    primary_ready: bool) -> tuple[list[Condition], dict[str, Any]]:
    """ReplicasReady and the replica status fields. The check compares each replica with the primary:
    while the primary cannot be read, the last ones found stay."""
    spec = DatabaseServerSpec.model_validate(body["spec"])
    if not spec.replicas:
        return server_replicas.without_replicas_condition(conds), server_replicas.NO_REPLICAS
    if not primary_ready:
        return conds, {}
    meta = body["metadata"]
    try:
        checks = connection.check_replicas(ctx, meta["namespace"], meta["name"], spec)
    except (engine.EngineError, BranchError) as exc:  # the primary (or its Secret) went since the probe
        log.warning("DatabaseServer %s/%s: replicas not checked: %s", meta["namespace"], meta["name"], exc.message)
        return conds, {}
    statuses = server_replicas.replica_statuses(checks)
    stored = (body.get("status") or {}).get("replicas")
    return (server_replicas.replicas_condition(conds, statuses, generation),
            server_replicas.replica_fields(statuses, stored))


def _unusable(replicas: Any) -> set[str]:
    return {str(r.get("address")) for r in replicas or [] if isinstance(r, dict) and not r.get("usable")}


def _tell_replicas_change(ctx: OperatorContext, body: dict[str, Any], had: list[Condition], conds: list[Condition],
                          stored: Any, found: Any) -> None:
    """An Event when ReplicasReady appears or flips (a Warning when it turns False), and a Warning when,
    while it stays False, the set of unusable replicas changes (`stored` and `found`: status.replicas
    before and after; None when the replicas were not checked)."""
    old = get_condition(had, common.CONDITION_REPLICAS_READY)
    new = get_condition(conds, common.CONDITION_REPLICAS_READY)
    if new is None:
        return
    flipped = old is None or old.status != new.status
    others = new.status == "False" and found is not None and _unusable(stored) != _unusable(found)
    if flipped or others:
        events.emit(ctx.kube, body, new.reason, new.message, warning=new.status != "True")


def _as_stored(value: Any) -> Any:
    """A value as the API server keeps it after a merge patch: nulls inside an object are dropped (so
    an unset field, e.g. tls.protocol without TLS, is no change on the next probe)."""
    if isinstance(value, dict):
        return {k: _as_stored(v) for k, v in value.items() if v is not None}
    return value


def _needed_secrets(body: dict[str, Any]) -> set[str]:
    """The admin Secret, and spec.tls when it names a Secret."""
    spec = body.get("spec") or {}
    names = {str((spec.get("adminSecretRef") or {}).get("name") or "")}
    tls = spec.get("tls") or {}
    if tls.get("name") and tls.get("kind", "Secret") == "Secret":
        names.add(str(tls["name"]))
    return names - {""}


def protect_admin_secret(kube: KubeClient, body: dict[str, Any]) -> None:
    namespace = body["metadata"]["namespace"]
    if body["metadata"].get("deletionTimestamp"):
        return
    for secret in sorted(_needed_secrets(body)):
        finalizers = resources.secret_finalizers(kube, namespace, secret)
        if finalizers is not None and SECRET_FINALIZER not in finalizers:
            resources.set_secret_finalizer(kube, namespace, secret, SECRET_FINALIZER, present=True)


def environments_using(kube: KubeClient, namespace: str, server: str) -> list[str]:
    """Environments whose database, inventory or spec is on `server`: they need it to be deleted."""
    users = []
    for env in resources.list_in(kube, resources.ENVIRONMENTS, namespace):
        status = env.get("status") or {}
        on_server = {(status.get("database") or {}).get("server"),
                     ((env.get("spec") or {}).get("database") or {}).get("serverRef"),
                     *(entry.get("server") for entry in status.get("inventory") or [])}
        if server in on_server:
            users.append(str(env["metadata"]["name"]))
    return sorted(users)


def release_server(ctx: OperatorContext, body: dict[str, Any], *, first_attempt: bool = True) -> None:
    """The DatabaseServer's finalizer: wait until no Environment needs the server, then let its admin
    Secret go (unless another DatabaseServer still uses it). The first wait is told in an Event."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    users = environments_using(ctx.kube, namespace, name)
    if users:
        message = (f"DatabaseServer {name} is still used by Environment(s) {', '.join(users)}: "
                   "waiting for them to be deleted")
        if first_attempt:
            events.emit(ctx.kube, body, "ServerInUse", message)
        raise Waiting("ServerInUse", message, ctx.settings.source_wait)
    release_unused_admin_secrets(ctx.kube, namespace)  # this server is being deleted: its Secret counts as unused


def release_unused_admin_secrets(kube: KubeClient, namespace: str) -> None:
    """Let go of every Secret in the namespace that holds our finalizer and that no DatabaseServer (not
    being deleted) still uses: a released server's, or the old one after adminSecretRef changed."""
    used = {name for s in resources.list_in(kube, resources.DATABASESERVERS, namespace)
            if not s["metadata"].get("deletionTimestamp") for name in _needed_secrets(s)}
    for name in resources.secrets_with_finalizer(kube, namespace, SECRET_FINALIZER):
        if name not in used:
            resources.set_secret_finalizer(kube, namespace, name, SECRET_FINALIZER, present=False)
