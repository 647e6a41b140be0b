"""DatabaseServer objects resolved into admin connections (the admin Secret's password and spec.tls read
through kube/, kept a few seconds), and the server probe."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from envbranch import postgres as engine
from envbranch.api.databaseserver import TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY, DatabaseServerSpec
from envbranch.branching.errors import StepFailed, Waiting
from envbranch.kube import resources
from envbranch.kube.client import KubeClient

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

SERVER_CACHE_SECONDS = 5.0


class ServerCache:
    """Admin connections by (project, DatabaseServer name), each kept `seconds`."""

    def __init__(self, seconds: float = SERVER_CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, str], tuple[float, engine.Server]] = {}

    def get(self, project: str, server_name: str) -> engine.Server | None:
        with self._lock:
            cached = self._servers.get((project, server_name))
        if cached is not None and time.monotonic() - cached[0] < self.seconds:
            return cached[1]
        return None

    def put(self, project: str, server_name: str, server: engine.Server) -> None:
        with self._lock:
            self._servers[(project, server_name)] = (time.monotonic(), server)


def server_info(ctx: OperatorContext, project: str, server_name: str) -> engine.Server:
    """The admin connection of a DatabaseServer, its password read from the admin Secret, tagging for
    this operator's cluster. A branch asks for it at every step: the answer is kept a few seconds (a
    password changed meanwhile costs one failed connection, which is retried)."""
    server = ctx.servers.get(project, server_name)
    if server is None:
        server = read_server(ctx.kube, project, server_name, cluster=ctx.cluster, clone_support=ctx.clone_support)
        ctx.servers.put(project, server_name, server)
    return server


def server_spec(kube: KubeClient, project: str, server_name: str) -> DatabaseServerSpec:
    """A DatabaseServer's spec as it is now (replicas, dump defaults, storage budget)."""
    body = resources.get(kube, resources.DATABASESERVERS, project, server_name)
    if body is None:
        raise Waiting("ServerNotFound", f"DatabaseServer {server_name!r} not found in {project}", 5)
    return DatabaseServerSpec.model_validate(body["spec"])


def read_server(kube: KubeClient, project: str, server_name: str, *, cluster: str | None = None,
                clone_support: engine.CloneSupport | None = None) -> engine.Server:
    """A DatabaseServer's admin connection, read now (the CLI's; the operator's goes through server_info)."""
    spec = server_spec(kube, project, server_name)
    ref = spec.admin_secret_ref
    values = resources.read_secret_values(kube, project, ref.name, (ref.username_key, ref.password_key))
    if values is None or ref.username_key not in values or ref.password_key not in values:
        raise StepFailed("database", "AdminSecretInvalid", f"Secret {ref.name!r} in {project} must hold keys "
                         f"{ref.username_key!r} and {ref.password_key!r}")
    return engine.Server(host=spec.host, port=spec.port, user=values[ref.username_key],
                         password=values[ref.password_key], sslmode=spec.ssl_mode, dbname=spec.maintenance_database,
                         tls=_read_tls(kube, project, spec), cluster=cluster, clone_support=clone_support)


def _read_tls(kube: KubeClient, project: str, spec: DatabaseServerSpec) -> engine.Tls | None:
    """spec.tls's CA bundle and optional client certificate and key. Messages name keys, never values."""
    ref = spec.tls
    if ref is None:
        return None
    keys = (TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY) if ref.kind == "Secret" else (TLS_CA_KEY,)
    values = resources.read_values(kube, ref.kind, project, ref.name, keys)
    where = f"{ref.kind} {ref.name!r} in {project} (spec.tls)"
    if values is None:
        # Applied together with the DatabaseServer by a GitOps tool, it may come a moment later.
        raise Waiting("TLSNotFound", f"{where} not found", 5)
    if b"-----BEGIN CERTIFICATE-----" not in values.get(TLS_CA_KEY, b""):
        raise StepFailed("database", "TLSInvalid", f"{where} must hold a PEM CA bundle under key {TLS_CA_KEY!r}")
    cert, key = values.get(TLS_CERT_KEY), values.get(TLS_KEY_KEY)
    if bool(cert) != bool(key):
        raise StepFailed("database", "TLSInvalid", f"{where} must hold both {TLS_CERT_KEY!r} and {TLS_KEY_KEY!r} "
                         "for a client certificate, or neither")
    return engine.Tls(ca=values[TLS_CA_KEY], cert=cert or None, key=key or None)


def listed_replicas(server: engine.Server, spec: DatabaseServerSpec) -> list[engine.Server]:
    """spec.replicas as sessions: `server`'s admin role, sslMode and TLS material, their own addresses."""
    return engine.replica_servers(server, [(r.host, r.port) for r in spec.replicas or []])


def check_replicas(ctx: OperatorContext, project: str, server_name: str,
                   spec: DatabaseServerSpec) -> list[engine.ReplicaCheck]:
    """Each listed replica as a Dump would find it (the same check `pick_replica` makes). Raises the
    primary's EngineError when its system identifier cannot be read."""
    server = server_info(ctx, project, server_name)
    return engine.check_replicas(server, listed_replicas(server, spec))


def probe(ctx: OperatorContext, project: str, server_name: str) -> tuple[bool, str, str, dict[str, Any]]:
    """(ready, reason, message, status fields) for a DatabaseServer."""
    try:
        server = server_info(ctx, project, server_name)
        caps = engine.probe(server)
    except (StepFailed, Waiting) as exc:
        return False, exc.reason, exc.message, {}
    except engine.TlsError as exc:
        return False, "TLSFailed", exc.message, {}
    except engine.EngineError as exc:
        return False, "Unreachable" if exc.transient else "ProbeFailed", exc.message, {}
    if not (caps.can_create_db and caps.can_create_role):
        return False, "InsufficientPrivileges", (f"admin role {server.user!r} needs CREATEDB and CREATEROLE"), {}
    tls = caps.tls
    return True, "Connected", f"PostgreSQL {caps.version} at {server.host}:{server.port}, {tls.describe()}", {
        "version": caps.version, "versionNum": caps.version_num, "strategies": caps.strategies,
        "fileCopyClone": caps.file_copy_clone,
        "tls": {"encrypted": tls.encrypted, "protocol": tls.protocol, "verified": tls.verified,
                "clientCertificate": tls.client_certificate}}
