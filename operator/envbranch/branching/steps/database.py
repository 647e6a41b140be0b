"""The environment's database: adopted, created empty, or cloned from the source;
its owner role made first, tagged, so the database is born owned by it."""

from __future__ import annotations

from typing import Any

from envbranch import metrics
from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.environment import DatabaseStatus, MaskingStatus
from envbranch.branching import database, watch
from envbranch.branching.inventory import Entry
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step
from envbranch.branching.steps import clone


def make(run: Run, plan: Plan) -> None:
    if plan.adopt_database:
        adopt(run, plan)
        return
    done = run.status.database
    if done is not None and done.name == plan.database and done.strategy and \
            database.tagged_uid(run.ctx, run.project, plan.server_name, plan.database) == run.uid:
        return
    if plan.role is not None:
        # The role first, tagged: the database is born owned by it, so even a crash right after
        # CREATE DATABASE leaves nothing that cannot be recognised as this environment's.
        run.record(Entry("Role", plan.role, server=plan.server_name))
        database.create_owner_role(run.ctx, run.project, plan.server_name, plan.role, run.uid)
    run.record(Entry("Database", plan.database, server=plan.server_name))
    if plan.parent is None:
        result = database.create_empty(run.ctx, run.project, plan.server_name, plan.database, run.uid,
                                         owner=plan.role)
    else:
        result = clone.clone(run, plan)
    watch.raise_if_deleted(run)
    run.event("DatabaseCloned" if plan.parent else "DatabaseCreated",
              f"database {plan.database} on {plan.server_name}: {result['strategy']}, "
              f"{result['bytes']} bytes in {result['seconds']}s{how_read(result)}")
    metrics.BYTES_COPIED.labels(result["strategy"]).inc(result["bytes"])
    ready = (common.CONDITION_DATABASE_READY, True, "Cloned" if plan.parent else "Created",
             f"database {plan.database} ready ({result['strategy']})")
    run.write(database=DatabaseStatus(server=plan.server_name, name=plan.database, **result),
              conditions=run.conditions_with(ready, *report_masking(run, plan)), masking=masking_status(plan))


def how_read(result: dict[str, Any]) -> str:
    """How a Dump read its source, for the DatabaseCloned Event: where from, and how long it held its snapshot."""
    said = ""
    if result.get("replica_lag_seconds") is not None:
        said += f", read from replica {result['rows_from']} ({result['replica_lag_seconds']}s behind)"
    if result.get("snapshot_seconds") is not None:
        said += f", snapshot held {result['snapshot_seconds']}s"
    if result.get("spooled"):
        said += " (spooled, then loaded at maxRate)"
    return said


def masking_status(plan: Plan) -> MaskingStatus | None:
    """Which policy masked the rows and how many columns; never the key."""
    mask = plan.masking
    return MaskingStatus(policy=mask.policy, columns=mask.columns,
                         inherited=True if mask.engine is None else None) if mask else None


def report_masking(run: Run, plan: Plan) -> list[tuple[str, bool, str, str]]:
    """The DataMasked condition and its Event, for a masked branch."""
    mask = plan.masking
    if mask is None:
        return []
    how = "inherited from the masked source" if mask.engine is None else "masked while the source was read"
    message = f"{mask.columns} columns masked by MaskingPolicy {mask.policy} ({how})"
    run.event("DataMasked", message)
    return [(common.CONDITION_DATA_MASKED, True, "Inherited" if mask.engine is None else "Masked", message)]


def adopt(run: Run, plan: Plan) -> None:
    database.require_database(run.ctx, run.project, plan.server_name, plan.database)
    if database.public_can_connect(run.ctx, run.project, plan.server_name, plan.database):
        run.event("PublicConnect", f"every role may CONNECT to the adopted database {plan.database}, "
                  "branch roles included: REVOKE CONNECT ON DATABASE … FROM PUBLIC", warning=True)
    run.write(database=DatabaseStatus(server=plan.server_name, name=plan.database, strategy="Adopted"),
              conditions=run.conditions_with((common.CONDITION_DATABASE_READY, True, "Adopted",
                                              f"adopted existing database {plan.database}")))


def undo(run: Run, entry: Entry) -> None:
    """DROP ... WITH (FORCE) of a database, or DROP ROLE, each only when tagged with our UID."""
    assert entry.server
    drop = database.drop_database if entry.kind == "Database" else database.drop_role
    try:
        drop(run.ctx, run.project, entry.server, entry.name, run.uid)
    except engine.NotOurs:
        # Recorded before a conflict was found: the name belongs to someone else; leave it be.
        run.event("NotOurs", f"{entry.describe()} is not this environment's: left in place", warning=True)


STEP = Step("database", make, condition=common.CONDITION_DATABASE_READY, percent=20,
            undo={"Role": undo, "Database": undo})
