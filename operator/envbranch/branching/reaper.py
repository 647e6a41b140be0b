"""The orphan reaper: databases and roles tagged with an Environment UID that no Environment has."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from envbranch import metrics
from envbranch.branching import database, errors
from envbranch.kube import events, resources

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

log = logging.getLogger(__name__)

Physical = tuple[str, int]                    # host, port of a PostgreSQL server
OrphanKey = tuple[str, int, str, str]         # host, port, kind, name


class ReaperState:
    """What the reaper remembers between passes: when each orphan was first seen, and when each
    physical server was last reaped. Many DatabaseServers (one per project) often name the same
    PostgreSQL: each physical server is reaped once per interval, not once per DatabaseServer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._first_seen: dict[OrphanKey, float] = {}
        self._last_reaped: dict[Physical, float] = {}

    def due(self, server: Physical, now: float, interval: float) -> bool:
        """True (and the pass counted as done now) when `server` was not reaped within `interval`."""
        with self.lock:
            due = now - self._last_reaped.get(server, -1e9) >= interval * 0.9
            if due:
                self._last_reaped[server] = now
            return due

    def orphan_since(self, key: OrphanKey, now: float) -> float:
        """When `key` was first seen orphaned (now, the first time). Call with `lock` held."""
        return self._first_seen.setdefault(key, now)

    def forget(self, key: OrphanKey) -> None:
        """Seen with a live Environment again, or dropped. Call with `lock` held."""
        self._first_seen.pop(key, None)


def _physical(server_body: dict[str, Any]) -> Physical:
    spec = server_body.get("spec") or {}
    return str(spec.get("host")), int(spec.get("port") or 5432)


def _due(ctx: OperatorContext, server_body: dict[str, Any], now: float) -> bool:
    key = _physical(server_body)
    due = ctx.reaper.due(key, now, ctx.settings.reaper_interval)
    metrics.REAPER_PASSES.labels(f"{key[0]}:{key[1]}", "ran" if due else "skipped").inc()
    return due


def reap_orphans(ctx: OperatorContext, server_body: dict[str, Any]) -> list[str]:
    """Drop tagged objects whose UID matches no Environment, once they have been orphans for the
    grace period (a UID seen again is forgotten). Returns what was dropped."""
    meta = server_body["metadata"]
    project, server = meta["namespace"], meta["name"]
    now = time.monotonic()
    if not _due(ctx, server_body, now):
        return []
    live = {e["metadata"]["uid"] for e in resources.list_in(ctx.kube, resources.ENVIRONMENTS)}
    dropped: list[str] = []
    failed: list[str] = []
    tagged = database.find_tagged(ctx, project, server)
    state = ctx.reaper
    with state.lock:
        for kind, name, uid in tagged:
            key = (*_physical(server_body), kind, name)
            if uid in live:
                state.forget(key)
                continue
            if now - state.orphan_since(key, now) < ctx.settings.reaper_grace:
                continue
            drop = database.drop_database if kind == "database" else database.drop_role
            try:
                drop(ctx, project, server, name, uid)
            except Exception as exc:  # one that cannot go (e.g. a role with grants elsewhere) blocks no other
                failed.append(f"{kind} {name}: {errors.describe(exc)}")
                continue
            state.forget(key)
            dropped.append(f"{kind} {name}")
    for what in failed:
        events.emit(ctx.kube, server_body, "OrphanNotReaped", f"could not drop orphan {what}", warning=True)
    for what in dropped:
        events.emit(ctx.kube, server_body, "OrphanReaped", f"dropped orphan {what} (its Environment no longer exists)")
        log.info("reaped orphan %s on %s/%s", what, project, server)
    return dropped
