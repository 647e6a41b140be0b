"""The environment's namespace: made and labelled, or an adopted one checked."""

from __future__ import annotations

from envbranch.api import common
from envbranch.branching import watch
from envbranch.branching.errors import StepFailed
from envbranch.branching.inventory import Entry
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.kube import namespaces


def make(run: Run, plan: Plan) -> None:
    if plan.adopt_namespace:
        if namespaces.read_namespace(run.ctx.kube, plan.namespace) is None:
            raise StepFailed("namespace", "NamespaceNotFound", f"namespace {plan.namespace!r} to adopt does not exist")
        return
    run.record(Entry("Namespace", plan.namespace))
    existing = namespaces.read_namespace(run.ctx.kube, plan.namespace)
    if existing is None:
        namespaces.create_namespace(run.ctx.kube, plan.namespace, {
            common.LABEL_PROJECT: run.project, common.LABEL_ENVIRONMENT: run.name, common.LABEL_UID: run.uid})
        run.event("NamespaceCreated", f"created namespace {plan.namespace}")
    elif (existing.metadata.labels or {}).get(common.LABEL_UID) != run.uid:
        raise StepFailed("namespace", "NamespaceConflict", f"namespace {plan.namespace!r} already exists "
                         "and does not belong to this Environment")


def undo(run: Run, entry: Entry) -> None:
    """Only a namespace labelled with our UID is deleted, and waited for."""
    kube = run.ctx.kube
    ns = namespaces.read_namespace(kube, entry.name)
    if ns is not None and (ns.metadata.labels or {}).get(common.LABEL_UID) == run.uid:
        namespaces.delete_namespace(kube, entry.name)
        watch.wait_for(lambda: namespaces.namespace_gone(kube, entry.name), f"namespace {entry.name} to go")


STEP = Step("namespace", make, percent=10, undo={"Namespace": undo})
