"""The Environment reconcile, DESIGN.md steps 1-7, and its rollback.

Every step is level-based: it looks at what exists before it creates, so an operator restarted at
any line converges on the same state. Each thing is recorded in status.inventory before it is
created; rollback and deletion remove the inventory in reverse order and verify it gone.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from envbranch import metrics, settings
from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.environment import EnvironmentSpec, parse_ttl
from envbranch.branching import config_copy, copy_lane, database
from envbranch.branching.conditions import Condition, get_condition, now_rfc3339, set_condition
from envbranch.branching.errors import Cancelled, Invalid, StepFailed, Transient, Waiting
from envbranch.branching.inventory import Entry, entries, with_entry
from envbranch.kube import configuration, events, namespaces, resources

log = logging.getLogger(__name__)

REGISTRATION_CONFIGMAP = "envbranch-environment"
STEPS = ("namespace", "database", "credentials", "configuration")
_STEP_PERCENT = {"validate": 0, "namespace": 10, "database": 20, "credentials": 80, "configuration": 90}
_STEP_CONDITION = {"database": common.CONDITION_DATABASE_READY, "credentials": common.CONDITION_CREDENTIALS_READY,
                   "configuration": common.CONDITION_CONFIG_COPIED}


def namespace_name(project: str, environment: str) -> str:
    return f"{project}-{environment}"


def credentials_secret_name(environment: str) -> str:
    return f"{environment}-db"


@dataclass
class Plan:
    """What step 1 found: everything the later steps need, resolved once."""

    namespace: str
    adopt_namespace: bool
    server_name: str
    database: str
    adopt_database: bool
    role: str | None
    parent: dict[str, Any] | None       # the source Environment, for branches
    source_server: str | None
    source_database: str | None


class EnvironmentRun:
    """One pass of the reconcile over a snapshot of the object; writes go to .status only."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        meta = body["metadata"]
        self.project: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.generation: int = int(meta.get("generation") or 1)
        self.annotations: dict[str, str] = dict(meta.get("annotations") or {})
        self.spec = EnvironmentSpec.model_validate(body.get("spec") or {})
        self.status: dict[str, Any] = copy.deepcopy(body.get("status") or {})

    # -- status ----------------------------------------------------------------------------------
    _step_progress: dict[str, Any] | None = None

    def write(self, **changes: Any) -> None:
        """Patch the fields that differ; nothing at all when nothing changed (no churn). A step's
        progress rides along with the next write rather than costing a write of its own."""
        if self._step_progress is not None:
            changes.setdefault("progress", self._step_progress)
            self._step_progress = None
        changed = {k: v for k, v in changes.items() if self.status.get(k) != v}
        if not changed:
            return
        self.status.update(changed)
        resources.patch_status(resources.ENVIRONMENTS, self.project, self.name, changed)

    def conditions_with(self, *updates: tuple[str, bool, str, str]) -> list[Condition]:
        conds: list[Condition] = list(self.status.get("conditions") or [])
        for type_, ok, reason, message in updates:
            conds = set_condition(conds, type_, ok, reason, message, self.generation)
        return conds

    def set_phase(self, phase: str, reason: str, message: str, *extra: tuple[str, bool, str, str],
                  settled: bool = True, **fields: Any) -> None:
        """Phase plus the kstatus trio: Ready, Reconciling (work under way), Stalled (failed, settled)."""
        ready = phase == common.PHASE_ACTIVE
        busy = not settled or phase in (common.PHASE_PENDING, common.PHASE_BRANCHING, common.PHASE_DELETING)
        conds = self.conditions_with(
            *extra,
            (common.CONDITION_READY, ready, reason, message),
            (common.CONDITION_RECONCILING, busy, reason, message),
            (common.CONDITION_STALLED, phase == common.PHASE_FAILED and settled, reason, message),
        )
        self.write(phase=phase, conditions=conds, **fields)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        events.emit(self.body, reason, message, warning=warning)

    @property
    def labels(self) -> dict[str, str]:
        """On everything this environment writes into a namespace: its name, and its UID to match by."""
        return {common.LABEL_ENVIRONMENT: self.name, common.LABEL_UID: self.uid}

    def owns(self, obj: dict[str, Any] | None) -> bool:
        """A ConfigMap or Secret is ours by UID label. Objects written before UIDs were labelled are
        matched by name, but only in a namespace this environment made itself (never an adopted one)."""
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if common.LABEL_UID in labels:
            return bool(labels[common.LABEL_UID] == self.uid)
        return obj is not None and not self.spec.namespace and labels.get(common.LABEL_ENVIRONMENT) == self.name

    def record(self, entry: Entry) -> None:
        inventory = with_entry(self.status, entry)
        if inventory is not None:
            self.write(inventory=inventory)

    def progress(self, step: str, percent: int) -> None:
        self.write(progress={"step": step, "percent": percent})

    # -- step 1: validate ------------------------------------------------------------------------
    def plan(self) -> Plan:
        spec = self.spec
        self.check_display_name()
        db_spec = spec.database
        if spec.source:
            if spec.source == self.name:
                raise Invalid("InvalidSource", "spec.source names this Environment itself")
            parent = resources.get(resources.ENVIRONMENTS, self.project, spec.source)
            if parent is None:
                raise Waiting("SourceNotFound", f"waiting for source Environment {spec.source!r} "
                              f"to exist in namespace {self.project}", settings.current.source_wait)
            self.pin_parent(parent)
            pstatus = parent.get("status") or {}
            if pstatus.get("phase") != common.PHASE_ACTIVE:
                raise Waiting("SourceNotReady", f"waiting for source Environment {spec.source!r} to be Active "
                              f"(it is {pstatus.get('phase') or 'Pending'})", settings.current.source_wait)
            pdb = pstatus.get("database") or {}
            source_server, source_database = pdb.get("server"), pdb.get("name")
            if not source_server or not source_database:
                raise Invalid("InvalidSource", f"source Environment {spec.source!r} reports no database")
            server_name = (db_spec.server_ref if db_spec and db_spec.server_ref else source_server)
        else:
            parent = None
            source_server = source_database = None
            server_name = db_spec.server_ref if db_spec and db_spec.server_ref else self.only_server()
        ns = spec.namespace or namespace_name(self.project, self.name)
        if len(ns) > 63:
            raise Invalid("NameTooLong", f"the environment namespace {ns!r} would be {len(ns)} characters; "
                          "Kubernetes allows 63: shorten the project or environment name")
        if len(credentials_secret_name(self.name)) > 253:
            raise Invalid("NameTooLong", "the environment name is too long for its credentials Secret")
        server = self.require_server_ready(server_name)
        adopt_db = bool(db_spec and db_spec.name)
        if db_spec and db_spec.name:
            self.check_adoptable(server, db_spec.name)
        if db_spec and db_spec.name:
            dbname, role = db_spec.name, None
        else:
            dbname = self.named("Database", server_name) or database.branch_database_name(self.project, self.name)
            role = self.named("Role", server_name) or database.branch_role_name(self.project, self.name)
        return Plan(
            namespace=ns, adopt_namespace=bool(spec.namespace), server_name=server_name, database=dbname,
            adopt_database=adopt_db, role=role,
            parent=parent, source_server=source_server, source_database=source_database)

    def named(self, kind: str, server: str) -> str | None:
        """The name already recorded for this environment's database or role: names chosen under an
        earlier naming scheme stay what they are."""
        return next((e.name for e in entries(self.status) if e.kind == kind and e.server == server), None)

    def check_display_name(self) -> None:
        wanted = self.spec.display_name
        if not wanted:
            return
        for other in resources.list_in(resources.ENVIRONMENTS, self.project):
            meta = other["metadata"]
            if meta["uid"] != self.uid and (other.get("spec") or {}).get("displayName", "").lower() == wanted.lower():
                raise Invalid("DisplayNameTaken", f"display name {wanted!r} is already used by Environment "
                              f"{meta['name']!r} in project {self.project}")

    def only_server(self) -> str:
        servers = resources.list_in(resources.DATABASESERVERS, self.project)
        if len(servers) != 1:
            raise Invalid("ServerRequired", "spec.database.serverRef is required: namespace "
                          f"{self.project} has {len(servers)} DatabaseServers")
        return str(servers[0]["metadata"]["name"])

    def pin_parent(self, parent: dict[str, Any]) -> None:
        """The source is the object first seen under its name: a source deleted and recreated (say as
        a root adopting someone else's namespace) is never copied from."""
        parent_uid = parent["metadata"]["uid"]
        pinned = self.status.get("parentUid")
        if pinned is None:
            self.write(parentUid=parent_uid)
        elif pinned != parent_uid:
            raise Invalid("SourceReplaced", f"source Environment {self.spec.source!r} was deleted and recreated "
                          f"(UID {pinned} is now {parent_uid}): nothing is copied from the new object; "
                          "delete this branch and create it again to branch from it")

    def check_adoptable(self, server: dict[str, Any], name: str) -> None:
        listed = (server.get("spec") or {}).get("adoptableDatabases") or []
        if name not in listed:
            raise Invalid("AdoptionNotAllowed", f"database {name!r} is not in spec.adoptableDatabases of "
                          f"DatabaseServer {server['metadata']['name']!r}: a project owner lists the databases "
                          "a root may adopt")

    def require_server_ready(self, server_name: str) -> dict[str, Any]:
        server = resources.get(resources.DATABASESERVERS, self.project, server_name)
        if server is None:
            raise Waiting("ServerNotFound", f"waiting for DatabaseServer {server_name!r} in namespace "
                          f"{self.project}", settings.current.source_wait)
        conds = (server.get("status") or {}).get("conditions") or []
        ready = next((c for c in conds if c.get("type") == common.CONDITION_READY), None)
        if not ready or ready.get("status") != "True":
            why = ready.get("message") if ready else "not probed yet"
            raise Waiting("ServerNotReady", f"waiting for DatabaseServer {server_name!r} to be Ready: {why}",
                          settings.current.source_wait)
        return server

    # -- steps 3-6 -------------------------------------------------------------------------------
    def inject_fault(self, step: str) -> None:
        """Test-only: fail at a named step when the operator runs with fault injection on."""
        if settings.current.fault_injection and self.annotations.get(common.ANNOTATION_INJECT_FAULT) == step:
            raise StepFailed(step, "InjectedFault", f"fault injected at step {step} (test switch)")

    _step: tuple[str, float] | None = None
    _started = 0.0

    def finish_step(self) -> None:
        if self._step is not None:
            metrics.STEP_SECONDS.labels(self._step[0]).observe(time.monotonic() - self._step[1])
            self._step = None

    def observe_branch(self, result: str) -> None:
        self.finish_step()
        db = self.status.get("database") or {}
        metrics.BRANCH_SECONDS.labels(db.get("strategy") or "none", self.spec.mode or "Root", result).observe(
            time.monotonic() - self._started)

    def pause_point(self, step: str) -> None:
        """Test-only: hold at a named step until the pause annotation is removed, so a test can kill
        the operator at an exact step boundary."""
        if not settings.current.fault_injection or self.annotations.get(common.ANNOTATION_INJECT_PAUSE) != step:
            return
        self.write()  # the step's progress, so the test sees where it paused
        self.event("Paused", f"paused at step {step} (test switch)")
        while True:
            body = resources.get(resources.ENVIRONMENTS, self.project, self.name)
            annotations = (body or {}).get("metadata", {}).get("annotations") or {}
            if annotations.get(common.ANNOTATION_INJECT_PAUSE) != step or self.cancelled:
                return
            time.sleep(0.2)

    def enter(self, step: str) -> None:
        self.finish_step()
        self._step = (step, time.monotonic())
        self._step_progress = {"step": step, "percent": _STEP_PERCENT[step]}
        self.pause_point(step)
        if self.cancelled:
            raise Cancelled()
        self.inject_fault(step)

    # -- cancellation ----------------------------------------------------------------------------
    cancelled = False
    DELETION_POLL_S = 1.0

    @contextlib.contextmanager
    def cancelled_on_deletion(self, plan: Plan) -> Iterator[None]:
        """While the steps run, watch for the Environment being deleted (Kopf runs the finalizer only
        after this handler returns). Once it is, the copy under way is cut off by dropping the branch
        database it writes into (tagged with our UID from its creation, so never anyone else's), and
        whatever the steps raise becomes Cancelled: the finalizer then removes what is left."""
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch_deletion, args=(plan, stop), daemon=True,
                                   name=f"envbranch-cancel-{self.name}")
        watcher.start()
        try:
            yield
        except Exception as exc:
            if self.cancelled:
                raise Cancelled() from exc
            raise
        finally:
            stop.set()
            watcher.join()
        if self.cancelled:
            raise Cancelled()

    def _being_deleted(self) -> bool:
        """True once this Environment is marked for deletion (or gone); an API hiccup says False."""
        try:
            body = resources.get(resources.ENVIRONMENTS, self.project, self.name)
        except Exception as exc:  # look again on the next tick
            log.debug("deletion watch of %s/%s: %s", self.project, self.name, type(exc).__name__)
            return False
        meta = (body or {}).get("metadata") or {}
        return body is None or meta.get("uid") != self.uid or bool(meta.get("deletionTimestamp"))

    def _watch_deletion(self, plan: Plan, stop: threading.Event) -> None:
        while not stop.wait(self.DELETION_POLL_S):
            if not self._being_deleted():
                continue
            self.cancelled = True
            if not plan.adopt_database:
                cut_off_copy(self.project, plan.server_name, plan.database, self.uid)
            return

    def raise_if_deleted(self) -> None:
        """A clone that finished between two ticks of the watcher is not reported as done when its
        Environment was deleted meanwhile: the finalizer removes it."""
        if self.cancelled or self._being_deleted():
            self.cancelled = True
            raise Cancelled()

    def step_namespace(self, plan: Plan) -> None:
        self.enter("namespace")
        if plan.adopt_namespace:
            if namespaces.read_namespace(plan.namespace) is None:
                raise StepFailed("namespace", "NamespaceNotFound",
                                 f"namespace {plan.namespace!r} to adopt does not exist")
            return
        self.record(Entry("Namespace", plan.namespace))
        existing = namespaces.read_namespace(plan.namespace)
        if existing is None:
            namespaces.create_namespace(plan.namespace, {
                common.LABEL_PROJECT: self.project, common.LABEL_ENVIRONMENT: self.name,
                common.LABEL_UID: self.uid})
            self.event("NamespaceCreated", f"created namespace {plan.namespace}")
        elif (existing.metadata.labels or {}).get(common.LABEL_UID) != self.uid:
            raise StepFailed("namespace", "NamespaceConflict", f"namespace {plan.namespace!r} already exists "
                             "and does not belong to this Environment")

    def registration(self, plan: Plan, server: database.ServerInfo) -> None:
        """The ConfigMap that tells the application where it runs."""
        if plan.adopt_namespace:
            return
        data = {"project": self.project, "environment": self.name, "parent": self.spec.source or "",
                "mode": self.spec.mode or "", "databaseHost": server.host, "databasePort": str(server.port),
                "databaseName": plan.database, "credentialsSecret": credentials_secret_name(self.name)}
        body = {"metadata": {"name": REGISTRATION_CONFIGMAP, "labels": self.labels}, "data": data}
        self.record(Entry("ConfigMap", REGISTRATION_CONFIGMAP, namespace=plan.namespace))
        if not configuration.create("ConfigMap", plan.namespace, body):
            if not self.owns(configuration.read("ConfigMap", plan.namespace, REGISTRATION_CONFIGMAP)):
                raise StepFailed("credentials", "ConfigConflict", f"ConfigMap {REGISTRATION_CONFIGMAP} already "
                                 f"exists in {plan.namespace} and is not this environment's")
            configuration.replace("ConfigMap", plan.namespace, REGISTRATION_CONFIGMAP, body)

    def step_database(self, plan: Plan) -> dict[str, Any]:
        self.enter("database")
        if plan.adopt_database:
            database.require_database(self.project, plan.server_name, plan.database)
            if database.public_can_connect(self.project, plan.server_name, plan.database):
                self.event("PublicConnect", f"every role may CONNECT to the adopted database {plan.database}, "
                           "branch roles included: REVOKE CONNECT ON DATABASE … FROM PUBLIC", warning=True)
            adopted = {"server": plan.server_name, "name": plan.database, "strategy": "Adopted"}
            self.write(database=adopted, conditions=self.conditions_with(
                (common.CONDITION_DATABASE_READY, True, "Adopted", f"adopted existing database {plan.database}")))
            return adopted
        done = self.status.get("database") or {}
        if done.get("name") == plan.database and done.get("strategy") and \
                database.tagged_uid(self.project, plan.server_name, plan.database) == self.uid:
            return dict(done)
        if plan.role is not None:
            # The role first, tagged: the database is born owned by it, so even a crash right after
            # CREATE DATABASE leaves nothing that cannot be recognised as this environment's.
            self.record(Entry("Role", plan.role, server=plan.server_name))
            database.create_owner_role(self.project, plan.server_name, plan.role, self.uid)
        self.record(Entry("Database", plan.database, server=plan.server_name))
        if plan.parent is None:
            result = database.create_empty(self.project, plan.server_name, plan.database, self.uid, owner=plan.role)
        else:
            result = self.clone(plan)
        self.raise_if_deleted()
        self.event("DatabaseCloned" if plan.parent else "DatabaseCreated",
                   f"database {plan.database} on {plan.server_name}: {result['strategy']}, "
                   f"{result['bytes']} bytes in {result['seconds']}s")
        db_status = {"server": plan.server_name, "name": plan.database, **result}
        metrics.BYTES_COPIED.labels(result["strategy"]).inc(result["bytes"])
        self.write(database=db_status, conditions=self.conditions_with(
            (common.CONDITION_DATABASE_READY, True, "Cloned" if plan.parent else "Created",
             f"database {plan.database} ready ({result['strategy']})")))
        return db_status

    COPY_POLL_S = 2.0
    COPY_INLINE_S = 1.0

    def clone(self, plan: Plan) -> dict[str, Any]:
        """Template copies and System (schema-only) dumps run here; a Full Dump goes to the copy lane
        and this returns Waiting until the lane has finished it."""
        assert plan.source_server and plan.source_database and self.spec.mode
        strategy = self.spec.database.strategy if self.spec.database else "Auto"
        job = copy_lane.LANE.get(self.uid)
        if job is None:
            last = [time.monotonic()]

            def report(step: str, percent: int) -> None:
                # At most one status write a second: progress must not flood the API server.
                if time.monotonic() - last[0] >= 1.0:
                    last[0] = time.monotonic()
                    self.progress("database", 20 + percent * 60 // 100)

            def copy(with_strategy: str, dump: bool = True) -> dict[str, Any]:
                assert plan.source_server and plan.source_database and self.spec.mode
                return database.clone(self.project, source_server=plan.source_server,
                                      source_database=plan.source_database, server=plan.server_name,
                                      database=plan.database, mode=self.spec.mode, strategy=with_strategy,
                                      uid=self.uid, progress=report, owner=plan.role, dump=dump)

            try:
                # A schema-only Dump is short: only a Full one goes to the lane.
                return copy(strategy, dump=self.spec.mode == "System")
            except engine.DumpNeeded:
                job = copy_lane.LANE.submit(self.uid, lambda: copy("Dump"))
            # A small copy is done within a moment: waiting that long here spares it a retry's delay.
            job.finished.wait(self.COPY_INLINE_S)
        if not job.done:
            if job.state == "queued":
                reason = "WaitingForCopySlot"
                message = (f"waiting for a copy slot: the operator runs {copy_lane.LANE.slots} long copies at "
                           "once (--copy-concurrency)")
            else:
                reason, message = "Copying", f"copying {plan.source_database} into {plan.database} (Dump)"
            self._step_progress = None  # the copy reports its own progress
            self.write(conditions=self.conditions_with((common.CONDITION_DATABASE_READY, False, reason, message)))
            raise Waiting(reason, message, self.COPY_POLL_S)
        copy_lane.LANE.forget(self.uid)
        return job.outcome()

    def step_credentials(self, plan: Plan, server: database.ServerInfo) -> None:
        self.enter("credentials")
        if plan.adopt_database or plan.role is None:
            return
        secret_name = credentials_secret_name(self.name)
        self.record(Entry("Role", plan.role, server=plan.server_name))
        self.record(Entry("Secret", secret_name, namespace=plan.namespace))
        existing = configuration.read("Secret", plan.namespace, secret_name)
        if existing is not None and not self.owns(existing):
            raise StepFailed("credentials", "SecretConflict", f"Secret {secret_name} already exists in "
                             f"{plan.namespace} and is not this environment's")
        if existing is None or not database.role_exists(self.project, plan.server_name, plan.role):
            password = database.create_role(self.project, plan.server_name, plan.database, plan.role, self.uid)
            body = database.credentials_secret(secret_name, server, plan.database, plan.role, password,
                                               labels=self.labels)
            if not configuration.create("Secret", plan.namespace, body):
                # Ours (checked above) from an attempt that stopped before the role was made.
                configuration.replace("Secret", plan.namespace, secret_name, body)
            self.event("CredentialsCreated", f"role {plan.role} and Secret {secret_name} created")
        self.write(credentialsSecret=secret_name, conditions=self.conditions_with(
            (common.CONDITION_CREDENTIALS_READY, True, "Created", f"Secret {secret_name} holds the credentials")))

    def step_configuration(self, plan: Plan) -> None:
        self.enter("configuration")
        flags = self.spec.copy_flags.model_dump(by_alias=True) if self.spec.copy_flags else {}
        if plan.parent is None:
            return
        source_ns = plan.parent["status"]["namespace"]
        to_copy, never = config_copy.planned_copies(source_ns, flags)
        report = config_copy.CopyReport(copied={flag: 0 for flag, on in flags.items() if on})
        for kind, obj, category in to_copy:
            name = obj["metadata"]["name"]
            self.inject_fault(f"configuration/{category}")
            self.record(Entry(kind, name, namespace=plan.namespace))
            body, rotated = config_copy.copy_body(kind, obj, self.labels, category)
            if not configuration.create(kind, plan.namespace, body) and \
                    not self.owns(configuration.read(kind, plan.namespace, name)):
                raise StepFailed("configuration", "ConfigConflict",
                                 f"{kind} {name} already exists in {plan.namespace} and is not a copy")
            flag = config_copy.CATEGORY_FLAGS[category]
            report.copied[flag] = report.copied.get(flag, 0) + 1
            if rotated:
                report.rotations.append({"secret": name, "keys": rotated})
        for kind, obj in never:
            name = obj["metadata"]["name"]
            report.skipped.append({"kind": kind, "name": name, "reason": "auth providers are never copied"})
            self.event("AuthProviderSkipped", f"{kind} {name} (auth-providers) is never copied to a branch")
        copied_total = sum(report.copied.values())
        if copied_total:
            self.event("ConfigCopied", ", ".join(f"{k}: {v}" for k, v in sorted(report.copied.items())))
        for rotation in report.rotations:
            self.event("SecretRotated", f"Secret {rotation['secret']}: fresh values for {', '.join(rotation['keys'])}")
        self.write(copied=report.copied, rotations=report.rotations, skipped=report.skipped,
                   conditions=self.conditions_with((common.CONDITION_CONFIG_COPIED, True, "Copied",
                                                    f"{copied_total} objects copied")))

    # -- the whole branch ------------------------------------------------------------------------
    def branch(self, retry: int) -> None:
        try:
            plan = self.plan()
        except Waiting as wait:
            self.set_phase(common.PHASE_PENDING, wait.reason, wait.message,
                           (common.CONDITION_SOURCE_READY, False, wait.reason, wait.message))
            raise
        except Invalid as bad:
            if self.status.get("inventory"):  # e.g. the source replaced after a partial attempt
                self.fail_and_roll_back("validate", bad.reason, bad.message)
                return
            self.event(bad.reason, bad.message, warning=True)
            self.set_phase(common.PHASE_FAILED, bad.reason, bad.message, observedGeneration=self.generation)
            return
        self.set_phase(common.PHASE_BRANCHING, "Branching", "branching", (
            common.CONDITION_SOURCE_READY, True, "SourceActive",
            f"source {self.spec.source} is Active" if self.spec.source else "root environment"),
            parent=self.spec.source, branchMode=self.spec.mode, namespace=plan.namespace)
        step = "namespace"
        self._started = time.monotonic()
        try:
            with self.cancelled_on_deletion(plan):
                self.step_namespace(plan)
                server = database.server_info(self.project, plan.server_name)
                step = "database"
                self.step_database(plan)
                step = "credentials"
                self.step_credentials(plan, server)
                self.registration(plan, server)
                step = "configuration"
                self.step_configuration(plan)
        except Cancelled as exc:
            self.finish_step()
            self.event(exc.reason, f"step {step} stopped: {exc.message}", warning=True)
            return
        except Waiting:
            raise  # e.g. the DatabaseServer went away mid-branch: wait for it, roll nothing back
        except Transient as exc:
            if retry < MAX_TRANSIENT_RETRIES:
                self.event("Retrying", f"step {exc.step}: {exc.message}", warning=True)
                raise
            self.fail_and_roll_back(exc.step, exc.reason, f"{exc.message} (gave up after {retry} retries)")
            return
        except StepFailed as exc:
            self.fail_and_roll_back(exc.step, exc.reason, exc.message)
            return
        except Exception as exc:
            if database.is_transient(exc) and retry < MAX_TRANSIENT_RETRIES:
                # Said like the Transient above (a sibling except clause would not see this one).
                self.event("Retrying", f"step {step}: {database.describe(exc)}", warning=True)
                raise Transient(step, type(exc).__name__, database.describe(exc)) from exc
            self.fail_and_roll_back(step, "Error", database.describe(exc))
            return
        self.activate(plan)

    def activate(self, plan: Plan) -> None:
        fields: dict[str, Any] = {"branchedAt": self.status.get("branchedAt") or now_rfc3339(),
                                  "progress": {"step": "done", "percent": 100},
                                  "observedGeneration": self.generation}
        if self.spec.ttl:
            fields["expiresAt"] = self.expires_at()
        what = f"branched from {self.spec.source} ({self.spec.mode})" if self.spec.source else "root environment"
        self.set_phase(common.PHASE_ACTIVE, "Active", what, **fields)
        self.observe_branch("Active")
        self.event("Active", f"environment is Active: {what}")

    def expires_at(self) -> str | None:
        if not self.spec.ttl:
            return None
        created = dt.datetime.fromisoformat(self.body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        return (created + parse_ttl(self.spec.ttl)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def fail_and_roll_back(self, step: str, reason: str, message: str) -> None:
        self.event("StepFailed", f"step {step} failed: {message}; rolling back", warning=True)
        self.observe_branch("Failed")
        metrics.ROLLBACKS.labels(reason).inc()
        failed_cond = _STEP_CONDITION.get(step)
        extra = [(failed_cond, False, reason, message)] if failed_cond else []
        # Failed first: a crash during the rollback resumes the rollback, never the branch.
        self.set_phase(common.PHASE_FAILED, reason, f"step {step} failed: {message}; rolling back", *extra,
                       settled=False, observedGeneration=self.generation, progress={"step": step, "percent": 100})
        self.roll_back()

    def roll_back(self) -> None:
        """Remove the inventory; a removal that fails is retried with backoff until it succeeds."""
        remove_inventory(self, "rollback")
        ready = get_condition(self.status.get("conditions") or [], common.CONDITION_READY) or {}
        reason = str(ready.get("reason") or "Failed")
        message = str(ready.get("message") or "failed").replace("; rolling back", "; rolled back")
        self.set_phase(common.PHASE_FAILED, reason, message)
        self.event("RolledBack", f"everything created for this environment was removed ({reason})", warning=True)


MAX_TRANSIENT_RETRIES = 5


def removal_order(items: list[Entry]) -> list[Entry]:
    """Newest first, except that roles go last: a role cannot be dropped while it owns a database."""
    newest_first = list(reversed(items))
    return [e for e in newest_first if e.kind != "Role"] + [e for e in newest_first if e.kind == "Role"]


def remove_inventory(run: EnvironmentRun, purpose: str) -> None:
    """Remove what the inventory lists, verifying each is gone, dropping each entry once it is. Any
    failure is retried with backoff (Transient): a rollback or a deletion must finish."""
    try:
        for entry in removal_order(entries(run.status)):
            remove_entry(run, entry)
            remaining = [e.as_dict() for e in entries(run.status) if e != entry]
            run.write(inventory=remaining)
    except Transient:
        raise
    except Exception as exc:
        raise Transient(purpose, "CleanupIncomplete", f"{purpose}: {database.describe(exc)}") from exc


def remove_entry(run: EnvironmentRun, entry: Entry) -> None:
    if entry.kind == "Namespace":
        ns = namespaces.read_namespace(entry.name)
        if ns is not None and (ns.metadata.labels or {}).get(common.LABEL_UID) == run.uid:
            namespaces.delete_namespace(entry.name)
            database.wait_for(lambda: namespaces.namespace_gone(entry.name), f"namespace {entry.name} to go")
    elif entry.kind in ("ConfigMap", "Secret"):
        assert entry.namespace
        kind: configuration.Kind = "ConfigMap" if entry.kind == "ConfigMap" else "Secret"
        if run.owns(configuration.read(kind, entry.namespace, entry.name)):
            configuration.delete(kind, entry.namespace, entry.name)
            database.wait_for(lambda: configuration.gone(kind, entry.namespace or "", entry.name),
                              f"{entry.describe()} to go")
    elif entry.kind in ("Database", "Role"):
        assert entry.server
        drop = database.drop_database if entry.kind == "Database" else database.drop_role
        try:
            drop(run.project, entry.server, entry.name, run.uid)
        except engine.NotOurs:
            # Recorded before a conflict was found: the name belongs to someone else; leave it be.
            run.event("NotOurs", f"{entry.describe()} is not this environment's: left in place", warning=True)


def reconcile_environment(body: dict[str, Any], retry: int) -> None:
    """Create, resume and update all land here; an Active, observed object is left alone."""
    run = EnvironmentRun(body)
    phase = run.status.get("phase")
    observed = run.status.get("observedGeneration") == run.generation
    if phase == common.PHASE_ACTIVE:
        if not observed:
            # Only displayName can change on an Active environment (the rest is immutable).
            try:
                run.check_display_name()
            except Invalid as bad:
                run.event(bad.reason, bad.message, warning=True)
                run.write(conditions=run.conditions_with((common.CONDITION_READY, True, bad.reason, bad.message)))
                return
            run.write(observedGeneration=run.generation, expiresAt=run.expires_at())
        return
    if phase == common.PHASE_FAILED:
        if run.status.get("inventory"):
            run.roll_back()
            return
        token = run.annotations.get(common.ANNOTATION_RETRY)
        if observed and (not token or token == run.status.get("lastRetry")):
            return
        run.write(lastRetry=token)
        run.event("Retrying", "branching again (envbranch.io/retry or a spec change)")
    run.branch(retry)


def cut_off_copy(project: str, server: str, name: str, uid: str) -> None:
    """Drop the branch database a copy writes into, which ends the copy with an error."""
    with contextlib.suppress(Exception):  # not there yet, or not ours: nothing to cut off
        database.drop_database(project, server, name, uid)


def expire_environment(body: dict[str, Any], ttl: str) -> None:
    """The ttl has passed: delete the Environment (its finalizer removes what it made)."""
    events.emit(body, "Expired", f"ttl {ttl} has passed: deleting the environment")
    resources.delete(resources.ENVIRONMENTS, body["metadata"]["namespace"], body["metadata"]["name"])


def stop_copy(run: EnvironmentRun) -> None:
    """A copy still in the lane is cut off (its branch database dropped, tagged ours) and waited for:
    the removal below must not race a copy that is still writing."""
    job = copy_lane.LANE.cancel(run.uid)
    if job is None:
        return
    if not job.done:
        run.event("Cancelled", "the Environment is being deleted: the copy under way is stopped")
        for entry in entries(run.status):
            if entry.kind == "Database" and entry.server:
                cut_off_copy(run.project, entry.server, entry.name, run.uid)
        if not job.finished.wait(5):
            raise Waiting("StoppingCopy", "waiting for the copy under way to stop", 1)
    copy_lane.LANE.forget(run.uid)


def delete_environment(body: dict[str, Any]) -> None:
    """The finalizer: with Delete, remove what this environment created and wait until it is gone."""
    run = EnvironmentRun(body)
    stop_copy(run)
    policy = run.spec.effective_deletion_policy()
    if policy == "Retain" and run.status.get("branchedAt"):
        # Kept databases and roles lose our tag, or the reaper would take them for orphans.
        for entry in entries(run.status):
            if entry.kind in ("Database", "Role") and entry.server:
                database.untag(run.project, entry.server, entry.kind.lower(), entry.name, run.uid)
        run.event("Retained", "deletionPolicy Retain: the database, role and namespace are kept")
        return
    # With Retain, an environment that never became Active has nothing worth keeping: its partial
    # work is removed like a rollback's.
    if run.status.get("phase") != common.PHASE_DELETING:
        run.set_phase(common.PHASE_DELETING, "Deleting", "removing the database, role and namespace")
        run.event("Deleting", "removing the database, role and namespace")
    remove_inventory(run, "deletion")
    run.event("Deleted", "database, role and namespace removed")
