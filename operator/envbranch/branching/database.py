"""The database side of the reconcile: DatabaseServer objects resolved into engine connections,
and the engine's calls shaped for the steps (plain dicts for status, classified errors)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from envbranch import postgres as engine
from envbranch.api.databaseserver import TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY, DatabaseServerSpec
from envbranch.branching.errors import StepFailed, Transient, Waiting
from envbranch.kube import client as kube_client
from envbranch.kube import namespaces as kube_namespaces
from envbranch.kube import resources

branch_database_name = engine.branch_database_name
branch_role_name = engine.branch_role_name
ServerInfo = engine.Server


_SERVER_CACHE_SECONDS = 5.0
_servers: dict[tuple[str, str], tuple[float, engine.Server]] = {}
_servers_lock = threading.Lock()


def server_info(project: str, server_name: str) -> engine.Server:
    """The admin connection of a DatabaseServer, its password read from the admin Secret. A branch
    asks for it at every step: the answer is kept a few seconds (a password changed meanwhile costs
    one failed connection, which is retried)."""
    key = (project, server_name)
    with _servers_lock:
        cached = _servers.get(key)
        if cached is not None and time.monotonic() - cached[0] < _SERVER_CACHE_SECONDS:
            return cached[1]
    server = _read_server(project, server_name)
    with _servers_lock:
        _servers[key] = (time.monotonic(), server)
    return server


def _read_server(project: str, server_name: str) -> engine.Server:
    body = resources.get(resources.DATABASESERVERS, project, server_name)
    if body is None:
        raise Waiting("ServerNotFound", f"DatabaseServer {server_name!r} not found in {project}", 5)
    spec = DatabaseServerSpec.model_validate(body["spec"])
    ref = spec.admin_secret_ref
    values = resources.read_secret_values(project, ref.name, (ref.username_key, ref.password_key))
    if values is None or ref.username_key not in values or ref.password_key not in values:
        raise StepFailed("database", "AdminSecretInvalid", f"Secret {ref.name!r} in {project} must hold keys "
                         f"{ref.username_key!r} and {ref.password_key!r}")
    return engine.Server(host=spec.host, port=spec.port, user=values[ref.username_key],
                         password=values[ref.password_key], sslmode=spec.ssl_mode, dbname=spec.maintenance_database,
                         tls=_read_tls(project, spec))


def _read_tls(project: str, spec: DatabaseServerSpec) -> engine.Tls | None:
    """spec.tls's CA bundle and optional client certificate and key. Messages name keys, never values."""
    ref = spec.tls
    if ref is None:
        return None
    keys = (TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY) if ref.kind == "Secret" else (TLS_CA_KEY,)
    values = resources.read_values(ref.kind, project, ref.name, keys)
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


def probe(project: str, server_name: str) -> tuple[bool, str, str, dict[str, Any]]:
    """(ready, reason, message, status fields) for a DatabaseServer."""
    try:
        server = server_info(project, server_name)
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
        # No null inside: a merge patch drops it, and the next probe would see a change that is not one.
        "tls": {k: v for k, v in {"encrypted": tls.encrypted, "protocol": tls.protocol, "verified": tls.verified,
                                  "clientCertificate": tls.client_certificate}.items() if v is not None}}


def _result(result: engine.CloneResult) -> dict[str, Any]:
    return {"strategy": result.strategy, "bytes": result.bytes, "seconds": result.seconds}


def clone(project: str, *, source_server: str, source_database: str, server: str, database: str, mode: str,
          strategy: str, uid: str, progress: Callable[[str, int], None], owner: str | None = None,
          dump: bool = True) -> dict[str, Any]:
    source = server_info(project, source_server)
    target = source if server == source_server else server_info(project, server)
    with target.connect() as conn:
        if engine.tags.database_exists(conn, database):
            if engine.tags.database_uid(conn, database) != uid:
                raise StepFailed("database", "DatabaseConflict", f"database {database} already exists on "
                                 f"{server} and is not this environment's")
            # Ours, from a run that stopped before recording it: start the copy again.
            engine.drop_database(target, database, uid)
    result = engine.clone_database(source, source_database, target, database, mode=mode,  # type: ignore[arg-type]
                                   strategy=strategy, uid=uid, progress=progress,  # type: ignore[arg-type]
                                   owner=owner, dump=dump)
    return _result(result)


def create_empty(project: str, server: str, database: str, uid: str, owner: str | None = None) -> dict[str, Any]:
    target = server_info(project, server)
    with target.connect() as conn:
        if engine.tags.database_exists(conn, database) and engine.tags.database_uid(conn, database) != uid:
            raise StepFailed("database", "DatabaseConflict", f"database {database} already exists on {server} "
                             "and is not this environment's")
    return _result(engine.create_empty_database(target, database, uid, owner))


def require_database(project: str, server: str, database: str) -> None:
    with server_info(project, server).connect() as conn:
        if not engine.tags.database_exists(conn, database):
            raise StepFailed("database", "DatabaseNotFound", f"database {database!r} to adopt does not exist "
                             f"on {server}")


def tagged_uid(project: str, server: str, database: str) -> str | None:
    with server_info(project, server).connect() as conn:
        return engine.tags.database_uid(conn, database)


def public_can_connect(project: str, server: str, database: str) -> bool:
    return engine.public_can_connect(server_info(project, server), database)


def untag(project: str, server: str, kind: str, name: str, uid: str) -> None:
    engine.untag(server_info(project, server), kind, name, uid)


def role_exists(project: str, server: str, role: str) -> bool:
    with server_info(project, server).connect() as conn:
        return engine.tags.role_exists(conn, role)


def _require_role_free(target: engine.Server, server: str, role: str, uid: str, step: str) -> None:
    with target.connect() as conn:
        if engine.tags.role_exists(conn, role) and engine.tags.role_uid(conn, role) != uid:
            raise StepFailed(step, "RoleConflict", f"role {role} already exists on {server} and is not "
                             "this environment's")


def create_owner_role(project: str, server: str, role: str, uid: str) -> None:
    """The branch role, tagged, before its database exists: the database is created owned by it."""
    target = server_info(project, server)
    _require_role_free(target, server, role, uid, "database")
    engine.create_owner_role(target, role, uid)


def create_role(project: str, server: str, database: str, role: str, uid: str) -> str:
    """The branch's LOGIN role, owner of its database; returns the new password (never logged)."""
    target = server_info(project, server)
    _require_role_free(target, server, role, uid, "credentials")
    password = engine.create_branch_role(target, role, uid)
    engine.grant_ownership(target, database, role)
    return password


# pgjdbc's sslmode takes libpq's names but has no `prefer`-style fallback for `allow`; `ssl=true`
# turns TLS on for the modes that require it.
_JDBC_SSL = {"disable": "sslmode=disable", "allow": "sslmode=allow", "prefer": "sslmode=prefer",
             "require": "ssl=true&sslmode=require", "verify-ca": "ssl=true&sslmode=verify-ca",
             "verify-full": "ssl=true&sslmode=verify-full"}


def credentials_secret(name: str, server: engine.Server, database: str, role: str, password: str,
                       labels: dict[str, str]) -> dict[str, Any]:
    """CloudNativePG's shape: username, password, host, port, dbname, uri, jdbc-uri, pgpass; plus
    sslmode, and ca.crt when the DatabaseServer has a CA. The uri carries sslmode but no
    sslrootcert: where the application mounts ca.crt is its own choice (it sets sslrootcert or
    PGSSLROOTCERT). The admin's client certificate and key are never copied: the branch role logs in
    by password."""
    host = f"{server.host}:{server.port}"
    values = {
        "username": role, "password": password, "host": server.host, "port": str(server.port), "dbname": database,
        "uri": f"postgresql://{role}:{password}@{host}/{database}?sslmode={server.sslmode}",
        "jdbc-uri": f"jdbc:postgresql://{host}/{database}?user={role}&password={password}&{_JDBC_SSL[server.sslmode]}",
        "pgpass": f"{server.host}:{server.port}:{database}:{role}:{password}\n",
        "sslmode": server.sslmode,
    }
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    if server.tls is not None:
        data[TLS_CA_KEY] = base64.b64encode(server.tls.ca).decode()
    return {"metadata": {"name": name, "labels": labels}, "type": "kubernetes.io/basic-auth", "data": data}


def identify_cluster() -> str | None:
    """Tags written from now on carry this cluster's identity, and the reaper skips other clusters'."""
    cluster = kube_namespaces.cluster_uid()
    engine.set_cluster(cluster)
    return cluster


def find_tagged(project: str, server: str) -> list[tuple[str, str, str]]:
    """This cluster's tagged databases and roles (another cluster's are never ours to reap)."""
    return [(t.kind, t.name, t.uid) for t in engine.find_tagged(server_info(project, server)) if not t.foreign]


def drop_database(project: str, server: str, name: str, uid: str) -> None:
    engine.drop_database(server_info(project, server), name, uid)


def drop_role(project: str, server: str, name: str, uid: str) -> None:
    engine.drop_role(server_info(project, server), name, uid)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, engine.EngineError):
        return exc.transient
    return kube_client.is_transient(exc)


def describe(exc: BaseException) -> str:
    """A message for conditions and Events: engine messages are already scrubbed; API errors are
    reduced to their status and reason (their bodies can echo request content)."""
    if isinstance(exc, engine.EngineError):
        return exc.message
    if isinstance(exc, ApiException):
        return f"Kubernetes API error {exc.status} {exc.reason}"
    return type(exc).__name__


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll a real condition; a wait that runs out becomes a retry, not a failure."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise Transient("cleanup", "StillPresent", f"timed out waiting for {what}")
        time.sleep(0.5)
