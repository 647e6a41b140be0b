"""Bad input, as a user meets it: refused by `kubectl apply` (CRD schema, CEL, the copy-flags policy)
with a message that says what is wrong, or reported in the Environment's Ready condition; in every
case nothing is created (no namespace, no database or role)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.admission import BAD_SPECS, IMMUTABLE_BRANCH_CHANGES, as_user, bind_users, copy_refused
from envbranch_testing.admission import environment_body as body
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.manifests import apply
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

BRANCH = {"source": "production", "mode": "System"}
IMMUTABLE_BASE = {"source": "production", "mode": "System", "copy": {"environmentVariables": True}}


@pytest.fixture(scope="module")
def bad(operator: OperatorProcess, controlplane: ControlPlane, k8s: client.ApiClient, postgres: Postgres) -> Project:
    """A project with the shop's production root, the copy-flags policy, people bound to the chart's
    roles, and an Active branch `fixed` whose immutable fields the tests try to change."""
    proj = Project(k8s, f"bad-{uuid.uuid4().hex[:6]}", postgres)
    proj.create_namespace(proj.namespace)
    proj.create_server()
    proj.wait_server_ready()
    proj.setup_production(f"shop_{proj.namespace.replace('-', '_')}", f"{proj.namespace}-prod")
    apply(controlplane, "copy-policy.yaml", "user-roles.yaml")
    bind_users(k8s, proj.namespace)
    proj.apply_env("fixed", IMMUTABLE_BASE)
    proj.wait_phase("fixed", "Active")
    return proj


def kubectl_apply(cp: ControlPlane, ns: str, manifest: dict[str, Any], user: str | None = None) -> str:
    """`kubectl apply` of one manifest that must be refused: what kubectl prints."""
    out = cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest), check=False,
                     kubeconfig=cp.kubeconfig_for(user) if user else None)
    assert out.returncode != 0, f"kubectl apply accepted {manifest}: {out.stdout}"
    return out.stderr


def assert_nothing_created(project: Project, name: str, uid: str | None = None) -> None:
    assert not project.namespace_exists(f"{project.namespace}-{name}")
    if uid:
        assert project.tagged(uid) == []
    with project.pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (engine.branch_database_name(project.namespace, name),)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (engine.branch_role_name(project.namespace, name),)).fetchone() is None


# -- refused at apply ---------------------------------------------------------------------------------
# (case id, metadata.name, spec, what kubectl prints); the CRD validation suite's cases come first.
APPLY_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (case, case, spec, message.replace('\\"', '"')) for case, spec, message in BAD_SPECS
] + [
    ("name-too-long", "a" * 64, BRANCH, "metadata.name must be a DNS label"),
    ("name-with-dot", "feature.login", BRANCH, "metadata.name must be a DNS label"),
    ("name-upper-case", "Feature", BRANCH, "a lowercase RFC 1123 subdomain must consist of"),
    ("display-name-sql", "display-sql", {**BRANCH, "displayName": "x; DROP DATABASE y"},
     "spec.displayName: Invalid value"),
    ("display-name-quote", "display-quote", {**BRANCH, "displayName": "Robert'); DROP TABLE customers;--"},
     "spec.displayName: Invalid value"),
    ("source-sql", "source-sql", {**BRANCH, "source": 'x"; DROP DATABASE postgres; --'}, "spec.source: Invalid value"),
    ("source-other-namespace", "source-other-ns", {**BRANCH, "source": "other-project/production"},
     "spec.source: Invalid value"),
    ("source-namespace-field", "source-ns-field", {**BRANCH, "sourceNamespace": "other-project"},
     'unknown field "spec.sourceNamespace"'),
    ("source-too-long", "source-long", {**BRANCH, "source": "s" * 64}, "spec.source: Too long"),
    ("mode-lower-case", "mode-lower", {**BRANCH, "mode": "full"}, 'spec.mode: Unsupported value: "full"'),
    ("unknown-copy-flag", "copy-unknown", {**BRANCH, "copy": {"everything": True}},
     'unknown field "spec.copy.everything"'),
    ("copy-flag-not-boolean", "copy-not-bool", {**BRANCH, "copy": {"fileProviders": "yes"}},
     "spec.copy.fileProviders: Invalid value"),
    ("mode-on-root", "mode-root", {"mode": "Full"}, "spec.mode needs spec.source"),
    ("server-ref-sql", "server-sql", {**BRANCH, "database": {"serverRef": "main; DROP ROLE postgres"}},
     "spec.database.serverRef: Invalid value"),
]


@pytest.mark.reliability("bad input refused at apply", "kubectl apply fails with the schema/CEL message; no object, "
                         "namespace, database or role")
@pytest.mark.parametrize(("case", "name", "spec", "message"), APPLY_CASES, ids=[c[0] for c in APPLY_CASES])
def test_refused_at_apply(bad: Project, controlplane: ControlPlane, record: Recorder, case: str, name: str,
                          spec: dict[str, Any], message: str) -> None:
    record.describe(f"bad input at apply: {case}", f"kubectl apply prints “{message}”; no Environment stored, no "
                    "namespace, database or role of its name")
    printed = kubectl_apply(controlplane, bad.namespace, body(name, spec))
    assert message in printed
    assert bad.env(name) is None
    assert_nothing_created(bad, name)


@pytest.mark.reliability("copy flags without the owner right", "an editor's kubectl apply is refused by the "
                         "ValidatingAdmissionPolicy naming the user, the verb and the role to bind; nothing created")
def test_copy_flags_need_the_owner_right(bad: Project, controlplane: ControlPlane) -> None:
    wait_until(lambda: copy_refused(as_user(controlplane, "alice"), bad.namespace, "probe", {"gatewayRoutes": True}),
               timeout=30, what="the copy-flags policy to be active")
    manifest = body("editor-copy", {**BRANCH, "copy": {"fileProviders": True}})
    printed = kubectl_apply(controlplane, bad.namespace, manifest, user="alice")
    assert 'copy flags are reserved for project owners: alice may not "copy"' in printed
    assert "envbranch-owner" in printed
    assert bad.env("editor-copy") is None
    assert_nothing_created(bad, "editor-copy")


IMMUTABLE_CASES = [(case, "fixed", patch, message) for case, patch, message in IMMUTABLE_BRANCH_CHANGES] + [
    ("change-namespace", "production", {"namespace": "elsewhere"}, "spec.namespace is immutable")]


@pytest.mark.reliability("changes to immutable fields", "kubectl apply of the changed manifest fails with "
                         "“spec.<field> is immutable”; the stored spec is unchanged")
@pytest.mark.parametrize(("case", "name", "patch", "message"), IMMUTABLE_CASES, ids=[c[0] for c in IMMUTABLE_CASES])
def test_immutable_fields_refused_at_apply(bad: Project, controlplane: ControlPlane, record: Recorder, case: str,
                                           name: str, patch: dict[str, Any], message: str) -> None:
    record.describe(f"immutable field: {case}", f"kubectl apply prints “{message}”; spec unchanged")
    before = (bad.env(name) or {})["spec"]
    printed = kubectl_apply(controlplane, bad.namespace, body(name, {**before, **patch}))
    assert message in printed
    assert (bad.env(name) or {})["spec"] == before


# -- reported by the operator ---------------------------------------------------------------------------
def _delete_then(project: Project, root: str) -> None:
    project.apply_env(root, {"database": {"serverRef": "main"}})
    project.wait_phase(root, "Active")
    project.delete_env(root)
    project.wait_gone(root)


def _failed_source(project: Project, name: str) -> None:
    project.apply_env(name, BRANCH, annotations={"envbranch.io/inject-fault": "namespace"})
    project.wait_stalled(name)


def _wrong_server(project: Project) -> None:
    if not _exists(project, "databaseservers", "wrong"):
        project.create_server("wrong", password="not-the-admin-password")
    wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "False"
                           for c in project.server_status("wrong").get("conditions") or []),
               timeout=60, what="DatabaseServer wrong to report not Ready")


def _exists(project: Project, plural: str, name: str) -> bool:
    try:
        project.custom.get_namespaced_custom_object(GROUP, VERSION, project.namespace, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


Setup = Callable[[Project], None]
# (case id, metadata.name, spec, setup, phase, reason, message fragment ({ns} is the project namespace))
RECONCILE_CASES: list[tuple[str, str, dict[str, Any], Setup | None, str, str, str]] = [
    ("duplicate-display-name", "dup-display", {**BRANCH, "displayName": "PRODUCTION"}, None, "Failed",
     "DisplayNameTaken", "display name 'PRODUCTION' is already used by Environment 'production'"),
    ("unknown-source", "unknown-src", {**BRANCH, "source": "no-such-env"}, None, "Pending", "SourceNotFound",
     "waiting for source Environment 'no-such-env' to exist in namespace {ns}"),
    ("deleted-source", "deleted-src", {**BRANCH, "source": "short-lived"}, lambda p: _delete_then(p, "short-lived"),
     "Pending", "SourceNotFound", "waiting for source Environment 'short-lived' to exist in namespace {ns}"),
    ("source-not-active", "failed-src", {**BRANCH, "source": "broken-parent"},
     lambda p: _failed_source(p, "broken-parent"), "Pending", "SourceNotReady",
     "waiting for source Environment 'broken-parent' to be Active (it is Failed)"),
    ("source-is-itself", "selfish", {**BRANCH, "source": "selfish"}, None, "Failed", "InvalidSource",
     "spec.source names this Environment itself"),
    ("server-wrong-credentials", "wrong-creds", {**BRANCH, "database": {"serverRef": "wrong"}}, _wrong_server,
     "Pending", "ServerNotReady", "password authentication failed"),
    ("server-unknown", "no-server", {**BRANCH, "database": {"serverRef": "nowhere"}}, None, "Pending",
     "ServerNotFound", "waiting for DatabaseServer 'nowhere' in namespace {ns}"),
    ("root-with-two-servers", "ambiguous-root", {}, _wrong_server, "Failed", "ServerRequired",
     "spec.database.serverRef is required: namespace {ns} has 2 DatabaseServers"),
    ("namespace-name-too-long", "n" * 63, BRANCH, None, "Failed", "NameTooLong", "Kubernetes allows 63"),
]


@pytest.fixture
def cleanup(bad: Project) -> Iterator[list[str]]:
    """Environments to delete after the test, so nothing of a bad case keeps the operator busy."""
    names: list[str] = []
    yield names
    for name in names:
        bad.delete_env(name)
    for name in names:
        bad.wait_gone(name)


@pytest.mark.reliability("bad input reported by the operator", "phase and Ready reason/message as the user reads "
                         "them in kubectl get/describe; no namespace, database or role")
@pytest.mark.parametrize(("case", "name", "spec", "setup", "phase", "reason", "message"), RECONCILE_CASES,
                         ids=[c[0] for c in RECONCILE_CASES])
def test_reported_in_the_ready_condition(bad: Project, record: Recorder, cleanup: list[str], case: str, name: str,
                                         spec: dict[str, Any], setup: Setup | None, phase: str, reason: str,
                                         message: str) -> None:
    message = message.format(ns=bad.namespace)
    record.describe(f"bad input in status: {case}", f"phase {phase}, Ready=False {reason}: “{message}”; no "
                    "namespace, no database or role by name or UID tag")
    if setup:
        setup(bad)
    cleanup.append(name)
    bad.apply_env(name, spec)
    uid = bad.uid(name)

    def reported() -> dict[str, Any] | None:
        status = bad.status(name)
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready if status.get("phase") == phase and ready.get("reason") == reason else None

    ready = wait_until(reported, timeout=60, what=f"{name} to report {phase}/{reason} (now {bad.status(name)})")
    assert ready["status"] == "False" and message in ready["message"], ready
    assert_nothing_created(bad, name, uid)


@pytest.mark.reliability("source in another namespace", "a branch cannot reach across projects: Pending with "
                         "SourceNotFound naming its own namespace; nothing created in either project")
def test_a_source_in_another_namespace_is_not_found(bad: Project, k8s: client.ApiClient) -> None:
    other = Project(k8s, f"other-{uuid.uuid4().hex[:6]}", bad.pg)
    other.create_namespace(other.namespace)
    other.apply_env("stray", BRANCH)
    status = other.wait_phase("stray", "Pending")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SourceNotFound"
    assert f"waiting for source Environment 'production' to exist in namespace {other.namespace}" in ready["message"]
    assert_nothing_created(other, "stray", other.uid("stray"))
    other.delete_env("stray")
    other.wait_gone("stray")
