"""Registration: the ConfigMap `envbranch-environment` that tells the application
where it runs. Made once the database and credentials are known; reported as part of credentials."""

from __future__ import annotations

from envbranch.api import common
from envbranch.branching.errors import StepFailed
from envbranch.branching.inventory import Entry
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.branching.steps import configuration
from envbranch.kube import configuration as config_objects

NAME = common.REGISTRATION_CONFIGMAP


def make(run: Run, plan: Plan) -> None:
    if plan.adopt_namespace or run.spec.sealed:  # a sealed environment has nothing to tell an application
        return
    assert run.server is not None
    data = {"project": run.project, "environment": run.name, "parent": run.spec.source or "",
            "mode": run.spec.mode or "", "databaseHost": run.server.host, "databasePort": str(run.server.port),
            "databaseName": plan.database, "credentialsSecret": common.credentials_secret_name(run.name)}
    body = {"metadata": {"name": NAME, "labels": run.labels}, "data": data}
    run.record(Entry("ConfigMap", NAME, namespace=plan.namespace))
    if not config_objects.create(run.ctx.kube, "ConfigMap", plan.namespace, body):
        if not run.owns(config_objects.read(run.ctx.kube, "ConfigMap", plan.namespace, NAME)):
            raise StepFailed("credentials", "ConfigConflict", f"ConfigMap {NAME} already "
                             f"exists in {plan.namespace} and is not this environment's")
        config_objects.replace(run.ctx.kube, "ConfigMap", plan.namespace, NAME, body)


STEP = Step("registration", make, part_of="credentials", undo={"ConfigMap": configuration.undo})
