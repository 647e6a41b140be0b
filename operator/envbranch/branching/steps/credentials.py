"""Credentials: the branch's LOGIN role, owner of its database, and the Secret
`<environment>-db` that holds how to connect."""

from __future__ import annotations

import base64
from typing import Any

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.databaseserver import TLS_CA_KEY
from envbranch.branching import database
from envbranch.branching.errors import StepFailed
from envbranch.branching.inventory import Entry
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.branching.steps import configuration
from envbranch.branching.steps import database as database_step
from envbranch.kube import configuration as config_objects


def make(run: Run, plan: Plan) -> None:
    if plan.adopt_database or plan.role is None:
        return
    assert run.server is not None
    if run.spec.sealed:
        seal(run, plan, plan.role)
        return
    secret_name = common.credentials_secret_name(run.name)
    run.record(Entry("Role", plan.role, server=plan.server_name))
    run.record(Entry("Secret", secret_name, namespace=plan.namespace))
    kube = run.ctx.kube
    existing = config_objects.read(kube, "Secret", plan.namespace, secret_name)
    if existing is not None and not run.owns(existing):
        raise StepFailed("credentials", "SecretConflict", f"Secret {secret_name} already exists in "
                         f"{plan.namespace} and is not this environment's")
    if existing is None or not database.role_exists(run.ctx, run.project, plan.server_name, plan.role):
        password = database.create_role(run.ctx, run.project, plan.server_name, plan.database, plan.role, run.uid)
        body = credentials_secret(secret_name, run.server, plan.database, plan.role, password,
                                           labels=run.labels)
        if not config_objects.create(kube, "Secret", plan.namespace, body):
            # Ours (checked above) from an attempt that stopped before the role was made.
            config_objects.replace(kube, "Secret", plan.namespace, secret_name, body)
        run.event("CredentialsCreated", f"role {plan.role} and Secret {secret_name} created")
    run.write(credentials_secret=secret_name, conditions=run.conditions_with(
        (common.CONDITION_CREDENTIALS_READY, True, "Created", f"Secret {secret_name} holds the credentials")))


def seal(run: Run, plan: Plan, role: str) -> None:
    """A sealed environment: its role (made NOLOGIN by the database step) owns everything, no role is
    granted CONNECT, and no credentials Secret exists: only the operator's admin connects."""
    database.hand_over(run.ctx, run.project, plan.server_name, plan.database, role, sealed=True)
    run.write(credentials_secret=None, conditions=run.conditions_with(
        (common.CONDITION_CREDENTIALS_READY, True, "Sealed",
         "sealed: no credentials are handed out and no role may log in to the database")))


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


STEP = Step("credentials", make, condition=common.CONDITION_CREDENTIALS_READY, percent=80,
            undo={"Role": database_step.undo, "Secret": configuration.undo})
