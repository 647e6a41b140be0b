"""Credentials: the branch's LOGIN role, owner of its database, and the Secret
`<environment>-db` that holds how to connect."""

from __future__ import annotations

from envbranch.api import common
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
    secret_name = common.credentials_secret_name(run.name)
    run.record(Entry("Role", plan.role, server=plan.server_name))
    run.record(Entry("Secret", secret_name, namespace=plan.namespace))
    existing = config_objects.read("Secret", plan.namespace, secret_name)
    if existing is not None and not run.owns(existing):
        raise StepFailed("credentials", "SecretConflict", f"Secret {secret_name} already exists in "
                         f"{plan.namespace} and is not this environment's")
    if existing is None or not database.role_exists(run.project, plan.server_name, plan.role):
        password = database.create_role(run.project, plan.server_name, plan.database, plan.role, run.uid)
        body = database.credentials_secret(secret_name, run.server, plan.database, plan.role, password,
                                           labels=run.labels)
        if not config_objects.create("Secret", plan.namespace, body):
            # Ours (checked above) from an attempt that stopped before the role was made.
            config_objects.replace("Secret", plan.namespace, secret_name, body)
        run.event("CredentialsCreated", f"role {plan.role} and Secret {secret_name} created")
    run.write(credentials_secret=secret_name, conditions=run.conditions_with(
        (common.CONDITION_CREDENTIALS_READY, True, "Created", f"Secret {secret_name} holds the credentials")))


STEP = Step("credentials", make, condition=common.CONDITION_CREDENTIALS_READY, percent=80,
            undo={"Role": database_step.undo, "Secret": configuration.undo})
