"""In-memory fakes of the reconcile core's ports: the Kubernetes calls in kube/ and the PostgreSQL
calls in branching/database.py. The core runs unchanged against them, in milliseconds, with an
OperatorContext of its own (settings, copy lane, caches) that each fake port checks it is handed."""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.branching import connection, database, environment
from envbranch.branching.context import OperatorContext
from envbranch.branching.errors import StepFailed
from envbranch.kube import configuration, events, namespaces, resources
from envbranch.kube.client import KubeClient
from envbranch.settings import OperatorSettings

PROJECT = "shop"
SERVER = "main"
CREATED = "2030-01-01T00:00:00Z"


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch: null deletes, objects merge, everything else (lists too) replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeKube:
    """Custom objects, namespaces, ConfigMaps/Secrets and Events of one fake cluster."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.config: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str, bool]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.removed: list[str] = []
        self.fail: dict[str, BaseException] = {}

    def _maybe_fail(self, op: str) -> None:
        if op in self.fail:
            raise self.fail.pop(op)

    # resources
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_in(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and namespace in (None, ns)]

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("patch_status")
        self.patches.append((name, copy.deepcopy(status)))
        obj = self.objects[(plural, namespace, name)]
        merge(obj.setdefault("status", {}), status)
        return copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.objects.pop((plural, namespace, name), None)

    def patch(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.objects[(plural, namespace, name)]
        merge(obj, copy.deepcopy(body))
        return copy.deepcopy(obj)

    # namespaces
    def read_namespace(self, name: str) -> client.V1Namespace | None:
        if name not in self.namespaces:
            return None
        return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(self.namespaces[name])))

    def create_namespace(self, name: str, labels: dict[str, str]) -> client.V1Namespace:
        self._maybe_fail("create_namespace")
        self.namespaces[name] = dict(labels)
        return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))

    def delete_namespace(self, name: str) -> None:
        if self.namespaces.pop(name, None) is not None:
            self.removed.append(f"Namespace {name}")
        for key in [k for k in self.config if k[1] == name]:
            del self.config[key]

    def namespace_gone(self, name: str) -> bool:
        return name not in self.namespaces

    # ConfigMaps and Secrets
    def list_labelled(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        if " in (" in selector:
            label, values = selector.split(" in (")
            wanted = set(values.rstrip(")").split(","))
        else:
            label, value = selector.split("=")
            wanted = {value}
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.config.items()) if k == kind and ns == namespace
                and ((o["metadata"].get("labels") or {}).get(label) in wanted)]

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.config.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> bool:
        self._maybe_fail(f"create {kind}")
        key = (kind, namespace, body["metadata"]["name"])
        if key in self.config:
            return False
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = namespace
        self.config[key] = obj
        return True

    def replace(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = namespace
        self.config[(kind, namespace, name)] = obj

    def delete_config(self, kind: str, namespace: str, name: str) -> None:
        if self.config.pop((kind, namespace, name), None) is not None:
            self.removed.append(f"{kind} {name}")

    def gone(self, kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) not in self.config

    def emit(self, obj: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((obj["metadata"]["name"], reason, message, warning))


class FakePostgres:
    """Databases and roles of the fake servers, each with the UID it is tagged with."""

    def __init__(self) -> None:
        self.databases: dict[tuple[str, str], str | None] = {}
        self.roles: dict[tuple[str, str], str | None] = {}
        self.public_connect: set[str] = set()
        self.fail: dict[str, BaseException] = {}
        self.removed: list[str] = []
        self.clone_gate: threading.Event | None = None   # set: a clone waits for it
        self.lane_only = False                           # a Full clone needs the copy lane (DumpNeeded)
        self.oids: dict[tuple[str, str], int] = {}       # a database keeps its OID when renamed
        self._next_oid = itertools.count(16384)
        self.handed_over: list[tuple[str, str, bool]] = []   # (database, role, sealed)
        self.swaps: list[tuple[str, str, str]] = []
        self.limits_seen: list[object] = []               # spec.database.dump handed to each clone
        self.busy_waits_seen: list[bool] = []             # each clone: Auto waits for a busy source
        self.flushes_seen: list[bool] = []                # each clone: checkpointed after a Dump
        self.storage_checks: list[tuple[str, str, str, str | None]] = []

    def _maybe_fail(self, op: str) -> None:
        if op in self.fail:
            raise self.fail.pop(op)

    def server_info(self, project: str, server: str) -> engine.Server:
        self._maybe_fail("server_info")
        return engine.Server(host="db.example", port=5432, user="admin", password="pw", sslmode="prefer",
                             dbname="postgres", tls=None)

    def require_database(self, project: str, server: str, name: str) -> None:
        if (server, name) not in self.databases:
            raise StepFailed("database", "DatabaseNotFound", f"database {name!r} to adopt does not exist on {server}")

    def public_can_connect(self, project: str, server: str, name: str) -> bool:
        return name in self.public_connect

    def tagged_uid(self, project: str, server: str, name: str) -> str | None:
        return self.databases.get((server, name))

    def create_owner_role(self, project: str, server: str, role: str, uid: str) -> None:
        self._maybe_fail("create_owner_role")
        if (server, role) in self.roles and self.roles[(server, role)] != uid:
            raise StepFailed("database", "RoleConflict", f"role {role} already exists on {server} and is not "
                             "this environment's")
        self.roles[(server, role)] = uid

    def _create(self, server: str, name: str, uid: str) -> dict[str, Any]:
        if (server, name) in self.databases and self.databases[(server, name)] != uid:
            raise StepFailed("database", "DatabaseConflict", f"database {name} already exists on {server} "
                             "and is not this environment's")
        self.databases[(server, name)] = uid
        self.oid(server, name)
        return {"strategy": "Template", "bytes": 100, "seconds": 0.1}

    def oid(self, server: str, name: str) -> int:
        return self.oids.setdefault((server, name), next(self._next_oid))

    def hand_over(self, project: str, server: str, database: str, role: str, *, sealed: bool) -> None:
        self.handed_over.append((database, role, sealed))

    def find_refresh(self, project: str, server: str, names: tuple[str, ...],
                     uid: str) -> dict[str, engine.refresh.Found]:
        self._maybe_fail("find_refresh")
        return {n: engine.refresh.Found(self.oid(server, n), self.databases[(server, n)] == uid)
                for n in names if (server, n) in self.databases}

    def _rename(self, server: str, name: str, to: str) -> None:
        assert (server, to) not in self.databases, f"{to} exists"
        self.databases[(server, to)] = self.databases.pop((server, name))
        self.oids[(server, to)] = self.oids.pop((server, name))

    def swap(self, project: str, server: str, current: str, fresh: str, previous: str, uid: str) -> float:
        self._maybe_fail("swap")
        self._rename(server, current, previous)
        self._rename(server, fresh, current)
        self.swaps.append((current, fresh, previous))
        return 0.05

    def rename(self, project: str, server: str, name: str, to: str, uid: str) -> None:
        self._rename(server, name, to)

    def allow_connections(self, project: str, server: str, name: str) -> None:
        pass

    def create_empty(self, project: str, server: str, name: str, uid: str, owner: str | None = None) -> dict[str, Any]:
        self._maybe_fail("create_empty")
        return {**self._create(server, name, uid), "strategy": "Empty"}

    def clone(self, project: str, *, source_server: str, source_database: str, server: str, database: str,
              mode: str, strategy: str, uid: str, progress: Callable[[str, int], None], owner: str | None = None,
              dump: bool = True, masking: object = None, limits: object = None,
              busy_source_waits: bool = False, flush: bool = False) -> dict[str, Any]:
        self.cloned_with_masking = masking
        self.limits_seen.append(limits)
        self.busy_waits_seen.append(busy_source_waits)
        self.flushes_seen.append(flush)
        if self.lane_only and not dump:
            raise engine.DumpNeeded()
        self._maybe_fail("clone")
        result = self._create(server, database, uid)
        if self.clone_gate is not None:
            self.clone_gate.wait(10)
            if (server, database) not in self.databases:   # cut off: its database was dropped
                raise engine.PermanentError("the copy was cut off")
        return {**result, "strategy": "Dump" if dump and self.lane_only else result["strategy"]}

    def require_storage(self, project: str, *, server: str, source_server: str, source_database: str, mode: str,
                        replacing: str | None = None) -> None:
        self.storage_checks.append((server, source_database, mode, replacing))
        self._maybe_fail("require_storage")

    def role_exists(self, project: str, server: str, role: str) -> bool:
        return (server, role) in self.roles

    def create_role(self, project: str, server: str, name: str, role: str, uid: str) -> str:
        self._maybe_fail("create_role")
        self.roles[(server, role)] = uid
        return "s3cret"

    def _drop(self, store: dict[tuple[str, str], str | None], kind: str, server: str, name: str, uid: str) -> None:
        self._maybe_fail(f"drop {kind}")
        if (server, name) not in store:
            return
        if store[(server, name)] != uid:
            raise engine.NotOurs(f"{kind} {name} is not this environment's")
        del store[(server, name)]
        if kind == "Database":
            self.oids.pop((server, name), None)
        self.removed.append(f"{kind} {name}")

    def drop_database(self, project: str, server: str, name: str, uid: str) -> None:
        self._drop(self.databases, "Database", server, name, uid)

    def drop_role(self, project: str, server: str, name: str, uid: str) -> None:
        self._drop(self.roles, "Role", server, name, uid)

    def untag(self, project: str, server: str, kind: str, name: str, uid: str) -> None:
        store = self.databases if kind == "database" else self.roles
        if store.get((server, name)) == uid:
            store[(server, name)] = None


class World:
    """A project namespace with one Ready DatabaseServer; helpers to add Environments and reconcile."""

    def __init__(self, kube: FakeKube, pg: FakePostgres, ctx: OperatorContext) -> None:
        self.kube, self.pg, self.ctx = kube, pg, ctx
        self.add_server(SERVER)

    def add_server(self, name: str, *, ready: bool = True, adoptable: list[str] | None = None) -> None:
        cond = {"type": "Ready", "status": "True" if ready else "False", "reason": "Connected",
                "message": "connected" if ready else "connection refused", "lastTransitionTime": CREATED}
        self.kube.objects[(resources.DATABASESERVERS, PROJECT, name)] = {
            "apiVersion": common.API_VERSION, "kind": "DatabaseServer",
            "metadata": {"name": name, "namespace": PROJECT, "uid": str(uuid.uuid4())},
            "spec": {"host": "db.example", "adminSecretRef": {"name": "admin"},
                     **({"adoptableDatabases": adoptable} if adoptable else {})},
            "status": {"conditions": [cond]}}

    def add_env(self, name: str, spec: dict[str, Any] | None = None, *, status: dict[str, Any] | None = None,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"apiVersion": common.API_VERSION, "kind": "Environment",
                "metadata": {"name": name, "namespace": PROJECT, "uid": str(uuid.uuid4()), "generation": 1,
                             "creationTimestamp": CREATED, "annotations": dict(annotations or {})},
                "spec": dict(spec or {})}
        if status is not None:
            body["status"] = copy.deepcopy(status)
        self.kube.objects[(resources.ENVIRONMENTS, PROJECT, name)] = body
        return body

    def add_active_source(self, name: str = "production") -> dict[str, Any]:
        """A root that is Active, with a namespace holding labelled configuration."""
        return self.add_env(name, status={"phase": "Active", "namespace": f"{PROJECT}-{name}",
                                          "database": {"server": SERVER, "name": f"{PROJECT}_{name}"}})

    def env(self, name: str) -> dict[str, Any]:
        body = self.kube.get(resources.ENVIRONMENTS, PROJECT, name)
        assert body is not None
        return body

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.env(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conds = self.status(name).get("conditions") or []
        return next(c for c in conds if c["type"] == type_)

    def reasons(self, name: str) -> list[str]:
        return [reason for who, reason, _, _ in self.kube.events if who == name]

    def set_meta(self, name: str, **fields: Any) -> None:
        meta = self.kube.objects[(resources.ENVIRONMENTS, PROJECT, name)]["metadata"]
        meta.update(fields)

    def reconcile(self, name: str, retry: int = 0) -> None:
        environment.reconcile_environment(self.ctx, self.env(name), retry)

    def delete(self, name: str) -> None:
        environment.delete_environment(self.ctx, self.env(name))


def fake_context() -> OperatorContext:
    """A context of its own: fault injection on, one copy slot, an API client never connected."""
    return OperatorContext.build(OperatorSettings(fault_injection=True, source_wait=5, copy_concurrency=1),
                                 KubeClient())


def _port(fake: Callable[..., Any], handed: object) -> Callable[..., Any]:
    """A fake port function that checks it was handed the context's object (the API client, or the
    context itself) as its first argument, then does the fake's work."""
    def call(first: object, *args: Any, **kwargs: Any) -> Any:
        assert first is handed, f"{fake.__name__} was handed {first!r}, not the world's"
        return fake(*args, **kwargs)
    return call


def install(monkeypatch: pytest.MonkeyPatch) -> World:
    """Route every port the core calls to a new fake cluster and fake PostgreSQL."""
    kube, pg, ctx = FakeKube(), FakePostgres(), fake_context()
    for name in ("get", "list_in", "patch_status", "delete", "patch"):
        monkeypatch.setattr(resources, name, _port(getattr(kube, name), ctx.kube))
    for name in ("read_namespace", "create_namespace", "delete_namespace", "namespace_gone"):
        monkeypatch.setattr(namespaces, name, _port(getattr(kube, name), ctx.kube))
    for name in ("list_labelled", "read", "create", "replace", "gone"):
        monkeypatch.setattr(configuration, name, _port(getattr(kube, name), ctx.kube))
    monkeypatch.setattr(configuration, "delete", _port(kube.delete_config, ctx.kube))
    monkeypatch.setattr(events, "emit", _port(kube.emit, ctx.kube))
    monkeypatch.setattr(connection, "server_info", _port(pg.server_info, ctx))
    for name in ("require_database", "public_can_connect", "tagged_uid", "create_owner_role", "require_storage",
                 "create_empty", "clone", "role_exists", "create_role", "drop_database", "drop_role", "untag",
                 "hand_over", "find_refresh", "swap", "rename", "allow_connections"):
        monkeypatch.setattr(database, name, _port(getattr(pg, name), ctx))
    return World(kube, pg, ctx)
