"""The postgres port as the steps use it: branch databases and roles created, cloned, checked and
dropped through postgres/, with this environment's conflicts raised as StepFailed and results as
plain dicts for status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envbranch import postgres as engine
from envbranch.api.databaseserver import DatabaseServerSpec
from envbranch.api.environment import DumpLimits, Mode, Strategy, parse_rate
from envbranch.branching import connection
from envbranch.branching.errors import StepFailed

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

branch_database_name = engine.branch_database_name
branch_role_name = engine.branch_role_name


INSUFFICIENT_STORAGE = "InsufficientStorage"


def _result(result: engine.CloneResult) -> dict[str, Any]:
    return {"strategy": result.strategy, "bytes": result.bytes, "seconds": result.seconds,
            "rows_from": result.rows_from, "replica_lag_seconds": result.replica_lag_seconds,
            "snapshot_seconds": result.snapshot_seconds, "spooled": result.spooled}


def dump_options(source: engine.Server, spec: DatabaseServerSpec, limits: DumpLimits | None,
                 spool: engine.Spool | None = None) -> engine.DumpOptions:
    """The Environment's limits over its source server's defaults, field by field; the source server's
    replicas (reached as its admin, with its TLS settings); the operator's spool directory when the
    copy asks to be spooled."""
    defaults = spec.dump or DumpLimits()
    wanted = limits or DumpLimits()
    rate = wanted.max_rate or defaults.max_rate
    spooled = wanted.spool if wanted.spool is not None else defaults.spool
    return engine.DumpOptions(
        streams=wanted.streams or defaults.streams or engine.DumpOptions.streams,
        max_rate=parse_rate(rate) if rate else None,
        replicas=tuple(connection.listed_replicas(source, spec)),
        spool=spool if spooled else None)


def require_storage(ctx: OperatorContext, project: str, *, server: str, source_server: str, source_database: str,
                    mode: Mode,
                    replacing: str | None = None) -> None:
    """Before a copy of `source_database` onto `server` (a branch, or a refresh's second copy beside
    the old one, which still counts): StepFailed(InsufficientStorage) unless it fits the server's
    spec.storage. `replacing`: a database the copy drops before it starts (not counted)."""
    budget = connection.server_spec(ctx.kube, project, server).storage
    if budget is None:
        return
    target = connection.server_info(ctx, project, server)
    source = target if server == source_server else connection.server_info(ctx, project, source_server)
    try:
        engine.require_room(target, source, source_database, mode,
                            engine.Budget(budget.budget_bytes, budget.reserve_bytes), replacing=replacing)
    except engine.InsufficientStorage as exc:
        raise StepFailed("database", INSUFFICIENT_STORAGE, exc.message) from None


def clone(ctx: OperatorContext, project: str, *, source_server: str, source_database: str, server: str,
          database: str, mode: Mode, strategy: Strategy, uid: str, progress: Callable[[str, int], None],
          owner: str | None = None, dump: bool = True, masking: engine.Masking | None = None,
          limits: DumpLimits | None = None, busy_source_waits: bool = False, flush: bool = False) -> dict[str, Any]:
    """The copy (see engine.clone_database). With `flush` (a sealed snapshot, a template for every later
    branch), a Dump's copy is checkpointed at once when the admin role may, so that the first branch of it
    does not pay for writing it."""
    source = connection.server_info(ctx, project, source_server)
    target = source if server == source_server else connection.server_info(ctx, project, server)
    with target.connect() as conn:
        if engine.tags.database_exists(conn, database):
            if engine.tags.database_uid(conn, database) != uid:
                raise StepFailed("database", "DatabaseConflict", f"database {database} already exists on "
                                 f"{server} and is not this environment's")
            # Ours, from a run that stopped before recording it: start the copy again.
            engine.drop_database(target, database, uid)
    options = dump_options(source, connection.server_spec(ctx.kube, project, source_server), limits,
                           ctx.spool)
    try:
        result = engine.clone_database(source, source_database, target, database, mode=mode, strategy=strategy,
                                       uid=uid, progress=progress, owner=owner, dump=dump, options=options,
                                       masking=masking, busy_source_waits=busy_source_waits)
    except engine.DiskFull as exc:
        raise StepFailed("database", INSUFFICIENT_STORAGE, f"{server} ran out of disk space during the copy, "
                         f"which was dropped at once (set or lower spec.storage): {exc.message}") from None
    if flush and result.strategy == "Dump" and not engine.checkpoint_if_allowed(target):
        log.info("%s: the first branch of %s writes it to disk (grant pg_checkpoint to the admin role to do "
                 "that now)", server, database)
    return _result(result)


def create_empty(ctx: OperatorContext, project: str, server: str, database: str, uid: str,
                 owner: str | None = None) -> dict[str, Any]:
    target = connection.server_info(ctx, project, server)
    with target.connect() as conn:
        if engine.tags.database_exists(conn, database) and engine.tags.database_uid(conn, database) != uid:
            raise StepFailed("database", "DatabaseConflict", f"database {database} already exists on {server} "
                             "and is not this environment's")
    return _result(engine.create_empty_database(target, database, uid, owner))


def require_database(ctx: OperatorContext, project: str, server: str, database: str) -> None:
    with connection.server_info(ctx, project, server).connect() as conn:
        if not engine.tags.database_exists(conn, database):
            raise StepFailed("database", "DatabaseNotFound", f"database {database!r} to adopt does not exist "
                             f"on {server}")


def tagged_uid(ctx: OperatorContext, project: str, server: str, database: str) -> str | None:
    with connection.server_info(ctx, project, server).connect() as conn:
        return engine.tags.database_uid(conn, database)


def public_can_connect(ctx: OperatorContext, project: str, server: str, database: str) -> bool:
    return engine.public_can_connect(connection.server_info(ctx, project, server), database)


def untag(ctx: OperatorContext, project: str, server: str, kind: str, name: str, uid: str) -> None:
    engine.untag(connection.server_info(ctx, project, server), kind, name, uid)


def role_exists(ctx: OperatorContext, project: str, server: str, role: str) -> bool:
    with connection.server_info(ctx, project, server).connect() as conn:
        return engine.tags.role_exists(conn, role)


def _require_role_free(target: engine.Server, server: str, role: str, uid: str, step: str) -> None:
    with target.connect() as conn:
        if engine.tags.role_exists(conn, role) and engine.tags.role_uid(conn, role) != uid:
            raise StepFailed(step, "RoleConflict", f"role {role} already exists on {server} and is not "
                             "this environment's")


def create_owner_role(ctx: OperatorContext, project: str, server: str, role: str, uid: str) -> None:
    """The branch role, tagged, before its database exists: the database is created owned by it."""
    target = connection.server_info(ctx, project, server)
    _require_role_free(target, server, role, uid, "database")
    engine.create_owner_role(target, role, uid)


def create_role(ctx: OperatorContext, project: str, server: str, database: str, role: str, uid: str) -> str:
    """The branch's LOGIN role, owner of its database; returns the new password (never logged)."""
    target = connection.server_info(ctx, project, server)
    _require_role_free(target, server, role, uid, "credentials")
    password = engine.create_branch_role(target, role, uid)
    engine.grant_ownership(target, database, role)
    return password


def hand_over(ctx: OperatorContext, project: str, server: str, database: str, role: str, *, sealed: bool) -> None:
    """Every object of `database` owned by the environment's role (a Template copy arrives owned by
    the source's): for a sealed environment, with CONNECT granted to no role."""
    engine.grant_ownership(connection.server_info(ctx, project, server), database, role, sealed=sealed)


def find_refresh(ctx: OperatorContext, project: str, server: str, names: tuple[str, ...],
                 uid: str) -> dict[str, engine.refresh.Found]:
    return engine.refresh.find(connection.server_info(ctx, project, server), names, uid)


def swap(ctx: OperatorContext, project: str, server: str, current: str, fresh: str, previous: str,
         uid: str) -> float:
    return engine.refresh.swap(connection.server_info(ctx, project, server), current, fresh, previous, uid)


def rename(ctx: OperatorContext, project: str, server: str, name: str, to: str, uid: str) -> None:
    engine.refresh.rename(connection.server_info(ctx, project, server), name, to, uid)


def allow_connections(ctx: OperatorContext, project: str, server: str, name: str) -> None:
    engine.refresh.allow_connections(connection.server_info(ctx, project, server), name)


def find_tagged(ctx: OperatorContext, project: str, server: str) -> list[tuple[str, str, str]]:
    """This cluster's tagged databases and roles (another cluster's are never ours to reap)."""
    target = connection.server_info(ctx, project, server)
    return [(t.kind, t.name, t.uid) for t in engine.find_tagged(target) if not t.foreign_to(target.cluster)]


def drop_database(ctx: OperatorContext, project: str, server: str, name: str, uid: str) -> None:
    engine.drop_database(connection.server_info(ctx, project, server), name, uid)


def drop_role(ctx: OperatorContext, project: str, server: str, name: str, uid: str) -> None:
    engine.drop_role(connection.server_info(ctx, project, server), name, uid)


