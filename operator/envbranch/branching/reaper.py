"""The orphan reaper: databases and roles tagged with an Environment UID that no Environment has."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from envbranch import metrics, settings
from envbranch.branching import database, errors
from envbranch.kube import events, resources

log = logging.getLogger(__name__)

_first_seen: dict[tuple[str, int, str, str], float] = {}
# Many DatabaseServers (one per project) often name the same PostgreSQL: reap each physical server
# once per interval, not once per DatabaseServer.
_last_reaped: dict[tuple[str, int], float] = {}
_lock = threading.Lock()


def _physical(server_body: dict[str, Any]) -> tuple[str, int]:
    spec = server_body.get("spec") or {}
    return str(spec.get("host")), int(spec.get("port") or 5432)


def _due(server_body: dict[str, Any], now: float) -> bool:
    key = _physical(server_body)
    with _lock:
        due = now - _last_reaped.get(key, -1e9) >= settings.current.reaper_interval * 0.9
        if due:
            _last_reaped[key] = now
    metrics.REAPER_PASSES.labels(f"{key[0]}:{key[1]}", "ran" if due else "skipped").inc()
    return due


def reap_orphans(server_body: dict[str, Any]) -> list[str]:
    """Drop tagged objects whose UID matches no Environment, once they have been orphans for the
    grace period (a UID seen again is forgotten). Returns what was dropped."""
    meta = server_body["metadata"]
    project, server = meta["namespace"], meta["name"]
    now = time.monotonic()
    if not _due(server_body, now):
        return []
    live = {e["metadata"]["uid"] for e in resources.list_in(resources.ENVIRONMENTS)}
    dropped: list[str] = []
    failed: list[str] = []
    tagged = database.find_tagged(project, server)
    with _lock:
        for kind, name, uid in tagged:
            key = (*_physical(server_body), kind, name)
            if uid in live:
                _first_seen.pop(key, None)
                continue
            first = _first_seen.setdefault(key, now)
            if now - first < settings.current.reaper_grace:
                continue
            drop = database.drop_database if kind == "database" else database.drop_role
            try:
                drop(project, server, name, uid)
            except Exception as exc:  # one that cannot go (e.g. a role with grants elsewhere) blocks no other
                failed.append(f"{kind} {name}: {errors.describe(exc)}")
                continue
            _first_seen.pop(key, None)
            dropped.append(f"{kind} {name}")
    for what in failed:
        events.emit(server_body, "OrphanNotReaped", f"could not drop orphan {what}", warning=True)
    for what in dropped:
        events.emit(server_body, "OrphanReaped", f"dropped orphan {what} (its Environment no longer exists)")
        log.info("reaped orphan %s on %s/%s", what, project, server)
    return dropped
