"""Configuration: the source's ConfigMaps and Secrets copied by category, as the
copy flags ask (the transformation is config_copy.py's)."""

from __future__ import annotations

from envbranch.api import common
from envbranch.branching import config_copy, hooks, watch
from envbranch.branching.errors import StepFailed
from envbranch.branching.inventory import Entry
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.kube import configuration
from envbranch.kube.configuration import Kind


def make(run: Run, plan: Plan) -> None:
    flags = run.spec.copy_flags.model_dump(by_alias=True) if run.spec.copy_flags else {}
    if plan.parent is None:
        return
    to_copy, never = config_copy.planned_copies(run.ctx.kube, plan.parent["status"]["namespace"], flags)
    report = config_copy.CopyReport(copied={flag: 0 for flag, on in flags.items() if on})
    for kind, obj, category in to_copy:
        name = obj["metadata"]["name"]
        hooks.inject_fault(run, f"configuration/{category}")
        run.record(Entry(kind, name, namespace=plan.namespace))
        body, rotated = config_copy.copy_body(kind, obj, run.labels, category)
        if not configuration.create(run.ctx.kube, kind, plan.namespace, body) and \
                not run.owns(configuration.read(run.ctx.kube, kind, plan.namespace, name)):
            raise StepFailed("configuration", "ConfigConflict",
                             f"{kind} {name} already exists in {plan.namespace} and is not a copy")
        flag = config_copy.CATEGORY_FLAGS[category]
        report.copied[flag] = report.copied.get(flag, 0) + 1
        if rotated:
            report.rotations.append({"secret": name, "keys": rotated})
    for kind, obj in never:
        name = obj["metadata"]["name"]
        report.skipped.append({"kind": kind, "name": name, "reason": "auth providers are never copied"})
        run.event("AuthProviderSkipped", f"{kind} {name} (auth-providers) is never copied to a branch")
    _report(run, report)


def _report(run: Run, report: config_copy.CopyReport) -> None:
    copied_total = sum(report.copied.values())
    if copied_total:
        run.event("ConfigCopied", ", ".join(f"{k}: {v}" for k, v in sorted(report.copied.items())))
    for rotation in report.rotations:
        run.event("SecretRotated", f"Secret {rotation['secret']}: fresh values for {', '.join(rotation['keys'])}")
    run.write(copied=report.copied, rotations=report.rotations, skipped=report.skipped,
              conditions=run.conditions_with((common.CONDITION_CONFIG_COPIED, True, "Copied",
                                              f"{copied_total} objects copied")))


def undo(run: Run, entry: Entry) -> None:
    """A ConfigMap or Secret is deleted only when it is ours (owns), and waited for."""
    assert entry.namespace
    kind: Kind = "ConfigMap" if entry.kind == "ConfigMap" else "Secret"
    kube = run.ctx.kube
    if run.owns(configuration.read(kube, kind, entry.namespace, entry.name)):
        configuration.delete(kube, kind, entry.namespace, entry.name)
        watch.wait_for(lambda: configuration.gone(kube, kind, entry.namespace or "", entry.name),
                          f"{entry.describe()} to go")


STEP = Step("configuration", make, condition=common.CONDITION_CONFIG_COPIED, percent=90,
            undo={"ConfigMap": undo, "Secret": undo})
