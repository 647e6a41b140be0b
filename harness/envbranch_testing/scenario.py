"""A project with a DatabaseServer and a production root, as the demo and the e2e tests build it."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.sample_app import apply_shop_configuration, create_shop_database


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


@dataclass
class Project:
    api: client.ApiClient
    namespace: str
    pg: Postgres
    server: str = "main"
    created_namespaces: list[str] = field(default_factory=list)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        self.created_namespaces.append(name)

    def delete_namespaces(self) -> None:
        """Delete what create_namespace made, as a user deletes a project: the operator's finalizers
        then remove every branch (nobody waits here; later tests run meanwhile)."""
        for name in reversed(self.created_namespaces):
            try:
                self.core.delete_namespace(name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise

    def create_server(self, name: str = "main", password: str | None = None, *, user: str | None = None,
                      pg: Postgres | None = None, host: str | None = None, ssl_mode: str = "disable",
                      tls: dict[str, str] | None = None, adoptable: tuple[str, ...] = ()) -> None:
        """A DatabaseServer and its admin Secret; by default on this project's server, without TLS."""
        pg = pg or self.pg
        self.core.create_namespaced_secret(self.namespace, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-admin"},
            "data": {"username": _b64(user or pg.admin.user), "password": _b64(password or pg.admin.password)}})
        spec: dict[str, Any] = {"host": host or pg.host, "port": pg.port, "sslMode": ssl_mode,
                                "adminSecretRef": {"name": f"{name}-admin"}}
        if tls is not None:
            spec["tls"] = tls
        if adoptable:
            spec["adoptableDatabases"] = list(adoptable)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "databaseservers", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer", "metadata": {"name": name}, "spec": spec})

    def allow_adoption(self, dbname: str, server: str = "main") -> None:
        """List `dbname` in the DatabaseServer's spec.adoptableDatabases, as a project owner does."""
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "databaseservers", server)
        listed = list((obj.get("spec") or {}).get("adoptableDatabases") or [])
        if dbname not in listed:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "databaseservers", server,
                                                       {"spec": {"adoptableDatabases": [*listed, dbname]}})

    def create_tls_object(self, name: str, values: dict[str, bytes], kind: str = "Secret") -> None:
        """A Secret (or ConfigMap) such as spec.tls names: ca.crt, and tls.crt/tls.key."""
        meta = {"name": name}
        if kind == "Secret":
            self.core.create_namespaced_secret(self.namespace, {
                "apiVersion": "v1", "kind": "Secret", "metadata": meta,
                "data": {k: base64.b64encode(v).decode() for k, v in values.items()}})
        else:
            self.core.create_namespaced_config_map(self.namespace, {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {k: v.decode() for k, v in values.items()}})

    def server_status(self, name: str = "main") -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "databaseservers", name)
        return dict(obj.get("status") or {})

    def wait_server_ready(self, name: str = "main", timeout: float = 60) -> None:
        wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                               for c in self.server_status(name).get("conditions") or []),
                   timeout=timeout, what=f"DatabaseServer {name} to be Ready")

    def wait_server_condition(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The DatabaseServer's Ready condition, once the operator has written one."""
        def ready() -> dict[str, Any] | None:
            return next((c for c in self.server_status(name).get("conditions") or [] if c["type"] == "Ready"), None)

        return wait_until(ready, timeout=timeout, what=f"DatabaseServer {name} to be probed")

    def apply_env(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "environments", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec})

    def env(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "environments",
                                                                 name))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.env(name) or {}).get("status") or {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        return wait_until(reached, timeout=timeout,
                          what=f"Environment {name} to reach {'/'.join(phases)} (now {self.status(name)})")

    def wait_stalled(self, name: str, timeout: float = 120) -> dict[str, Any]:
        """Failed and settled: the rollback finished (kstatus Stalled=True)."""
        def stalled() -> dict[str, Any] | None:
            status = self.status(name)
            conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return status if status.get("phase") == "Failed" and conds.get("Stalled") == "True" else None

        return wait_until(stalled, timeout=timeout, what=f"Environment {name} to fail and finish its rollback")

    def delete_env(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "environments", name)

    def wait_gone(self, name: str, timeout: float = 120) -> None:
        wait_until(lambda: self.env(name) is None, timeout=timeout, what=f"Environment {name} to be gone")

    def uid(self, name: str) -> str:
        return str((self.env(name) or {})["metadata"]["uid"])

    def engine_server(self) -> engine.Server:
        return engine.Server(self.pg.host, self.pg.port, self.pg.admin.user, self.pg.admin.password)

    def tagged(self, uid: str) -> list[engine.Tagged]:
        """The databases and roles on this project's server tagged with an Environment UID."""
        return [t for t in engine.find_tagged(self.engine_server()) if t.uid == uid]

    def namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def event_reasons(self, name: str, kind: str = "Environment") -> list[str]:
        """The reasons of the Events about `kind` `name`, oldest first."""
        return [reason for reason, _ in self.events(name, kind)]

    def events(self, name: str, kind: str = "Environment") -> list[tuple[str, str]]:
        """(reason, message) of the Events about `kind` `name`, oldest first."""
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}").items
        # etcd's revision orders creations exactly; creationTimestamp has whole seconds only.
        return [(e.reason, e.message) for e in sorted(items, key=lambda e: int(e.metadata.resource_version))]

    def wait_events(self, name: str, *reasons: str, kind: str = "Environment",
                    timeout: float = 30.0) -> list[tuple[str, str]]:
        """The Events about `kind` `name` once each of `reasons` is among them. The operator posts an
        Event after the status change it reports, so a test that saw the status waits for the Event."""
        def posted() -> list[tuple[str, str]] | None:
            events = self.events(name, kind)
            return events if set(reasons) <= {reason for reason, _ in events} else None

        return wait_until(posted, timeout=timeout, what=f"Events {', '.join(reasons)} about {kind} {name}")

    def annotate(self, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        """Set (or, with None, remove) annotations of Environment `name`; the object as stored."""
        return dict(self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "environments", name, {"metadata": {"annotations": annotations}}))

    def database_exists(self, name: str) -> bool:
        with self.pg.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def role_exists(self, name: str) -> bool:
        with self.pg.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None

    def comment(self, kind: str, name: str) -> str | None:
        """The comment (where envbranch keeps its tag) on a database or role, by name."""
        query = {"database": "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                 "role": "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s"}[kind]
        with self.pg.connect() as conn:
            row = conn.execute(query, (name,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def wait_reaper_pass(self, timeout: float = 60) -> None:
        """Wait for a whole reaper pass that started after this call, grace included: an orphan role
        planted now is dropped by the first pass that sees it once the grace has run out, and that
        pass also drops anything orphaned before it (first seen no later than the canary)."""
        canary_uid = str(uuid.uuid4())
        canary = f"reaper_canary_{canary_uid[:8]}"
        engine.create_branch_role(self.engine_server(), canary, canary_uid)
        wait_until(lambda: not self.role_exists(canary), timeout=timeout,
                   what=f"the reaper to drop the canary orphan role {canary}")

    def setup_production(self, dbname: str, namespace: str) -> list[dict[str, Any]]:
        """The production app: database, namespace with configuration, and its adopting root."""
        create_shop_database(self.pg, dbname)
        self.create_namespace(namespace)
        objects = apply_shop_configuration(self.api, namespace)
        self.allow_adoption(dbname, self.server)
        self.apply_env("production", {"displayName": "Production", "namespace": namespace,
                                      "database": {"serverRef": self.server, "name": dbname}})
        self.wait_phase("production", "Active")
        return objects


def assert_nothing_left(project: Project, name: str, uid: str, timeout: float = 60) -> None:
    """Gone by name, not only untagged (a Delete that behaved like Retain would untag and keep): no
    namespace, no database or role tagged with the UID, no database or role of the branch's name."""
    ns = f"{project.namespace}-{name}"
    wait_until(lambda: not project.namespace_exists(ns), timeout=timeout, what=f"namespace {ns} to be gone")
    assert project.tagged(uid) == []
    db, role = engine.branch_database_name(project.namespace, name), engine.branch_role_name(project.namespace, name)
    assert not project.database_exists(db), f"database {db} is still there"
    assert not project.role_exists(role), f"role {role} is still there"
