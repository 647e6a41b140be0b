"""A randomised, seeded, time-bounded churn soak: 16 branch names created and deleted at random (System,
Full, Dump, random copy flags) while the operator is SIGKILLed every 15-35 s and PostgreSQL is restarted
every 50-90 s; then everything is deleted and nothing may be left, by name, by tag or by owner.

  ENVBRANCH_SOAK_SECONDS  how long the churn runs (default 30; the full soak is 300)
  ENVBRANCH_SOAK_SEED     the seed of the actions and of the fault schedule (default: random; the seed
                          used is printed and recorded in the results table, so a failure can be replayed)
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from faults import DUMP
from kubernetes import client

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import WaitTimeout, wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

SOAK_SECONDS = float(os.environ.get("ENVBRANCH_SOAK_SECONDS") or 30)
NAMES = [f"c-{i:02d}" for i in range(16)]
SPECS: list[dict[str, Any]] = [
    {"source": "production", "mode": "System"},
    {"source": "production", "mode": "Full"},
    {"source": "production", "mode": "Full", "database": DUMP},
]
COPY_FLAGS = ("fileProviders", "gatewayRoutes", "securityConfig", "environmentVariables")
KILL_EVERY, KILL_DOWN = (15.0, 35.0), (0.5, 3.0)      # seconds between SIGKILLs; operator down for
RESTART_EVERY, PG_DOWN = (50.0, 90.0), (0.5, 3.0)     # seconds between PostgreSQL stops; server down for
CLEANUP_TIMEOUT = 240.0


def _seed() -> int:
    given = os.environ.get("ENVBRANCH_SOAK_SEED")
    return int(given) if given else secrets.randbelow(2**32)


@dataclass
class Fault:
    """A process taken down on its own schedule and brought back after a short outage, while the churn
    goes on: `step()` is called between actions and does whatever transition is due. The first outage
    comes within `first_within` seconds, so a short soak still has one of each fault."""

    rng: random.Random
    every: tuple[float, float]
    down: tuple[float, float]
    take_down: Callable[[], None]
    bring_up: Callable[[], None]
    first_within: float
    due: float = 0.0
    up: bool = True
    count: int = 0

    def __post_init__(self) -> None:
        self.due = time.monotonic() + min(self.rng.uniform(*self.every), self.rng.uniform(0.3, 0.7) * self.first_within)

    def step(self) -> None:
        if time.monotonic() < self.due:
            return
        if self.up:
            self.take_down()
            self.up, self.count = False, self.count + 1
            self.due = time.monotonic() + self.rng.uniform(*self.down)
        else:
            self.ensure_up()

    def ensure_up(self) -> None:
        if not self.up:
            self.bring_up()
            self.up = True
            self.due = time.monotonic() + self.rng.uniform(*self.every)


def _create(project: Project, name: str, spec: dict[str, Any]) -> str | None:
    """Create the Environment; its UID, or None when the name is (still) taken."""
    try:
        obj = project.custom.create_namespaced_custom_object(GROUP, VERSION, project.namespace, "environments", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment", "metadata": {"name": name}, "spec": spec})
    except client.ApiException as exc:
        if exc.status == 409:
            return None
        raise
    return str(obj["metadata"]["uid"])


def _delete(project: Project, name: str) -> bool:
    try:
        project.delete_env(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _churn_envs(project: Project) -> list[dict[str, Any]]:
    items = project.custom.list_namespaced_custom_object(GROUP, VERSION, project.namespace, "environments")["items"]
    return [e for e in items if e["metadata"]["name"] in NAMES]


def _phase(env: dict[str, Any]) -> str:
    phase = str((env.get("status") or {}).get("phase") or "new")
    return phase + (" (deleted)" if env["metadata"].get("deletionTimestamp") and phase != "Deleting" else "")


def _leftovers(project: Project, uids: set[str]) -> list[str]:
    """Everything of the 16 names still there: namespaces; databases and roles by name (with owner and
    comment); databases and roles tagged with a UID of the run; databases owned by a branch-named role."""
    left = [f"namespace {project.namespace}-{n}" for n in NAMES if project.namespace_exists(f"{project.namespace}-{n}")]
    db_names = {engine.branch_database_name(project.namespace, n) for n in NAMES}
    role_names = {engine.branch_role_name(project.namespace, n) for n in NAMES}
    role_prefix = engine.branch_role_name(project.namespace, "c-00").removesuffix("c_00_owner") + "c_"
    with project.pg.connect() as conn:
        dbs = conn.execute("SELECT d.datname, r.rolname, shobj_description(d.oid, 'pg_database'), "
                           "shobj_description(r.oid, 'pg_authid') FROM pg_database d "
                           "LEFT JOIN pg_roles r ON r.oid = d.datdba ORDER BY d.datname").fetchall()
        roles = conn.execute("SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
                             "ORDER BY rolname").fetchall()
    for datname, owner, comment, owner_comment in dbs:
        by_name = datname in db_names
        by_owner = owner in role_names or (str(owner).startswith(role_prefix) and str(owner).endswith("_owner"))
        if by_name or by_owner:
            left.append(f"database {datname} ({'by name' if by_name else 'by owner'}; owner {owner} "
                        f"[comment {owner_comment!r}]; comment {comment!r})")
    left += [f"role {name} (comment {comment!r})" for name, comment in roles if name in role_names]
    left += [f"tagged {t.kind} {t.name} (uid {t.uid}, cluster {t.cluster})"
             for t in engine.find_tagged(project.engine_server()) if t.uid in uids]
    return left


@pytest.mark.needs_local_operator  # SIGKILLs and restarts the operator process
@pytest.mark.timeout(SOAK_SECONDS + 900)
@pytest.mark.reliability("churn soak: 16 names created and deleted at random, operator SIGKILLed every 15-35 s, "
                         "PostgreSQL restarted every 50-90 s (ENVBRANCH_SOAK_SECONDS, ENVBRANCH_SOAK_SEED)",
                         "System, Full and Dump branches with random copy flags; after deleting everything every "
                         "Environment gone, then no namespace, database or role left by name, by tag or owned by a "
                         "branch role; the operator never exited but by our SIGKILLs")
def test_churn_with_kills_and_restarts_leaves_nothing(shop: Project, operator: OperatorProcess,
                                                      record: Recorder) -> None:
    seed = _seed()
    print(f"churn soak: seed {seed}, {SOAK_SECONDS:.0f} s (replay with ENVBRANCH_SOAK_SEED={seed})")
    record.number("seed", seed)
    rng = random.Random(seed)
    # Separate streams: the action sequence replays exactly whatever the timing of the faults.
    kill_rng, pg_rng = random.Random(rng.getrandbits(64)), random.Random(rng.getrandbits(64))
    pg = shop.pg
    port = pg.port

    def stop_pg() -> None:
        assert pg.process is not None
        pg.process.stop()

    def start_pg() -> None:
        pg.start()
        assert pg.port == port

    exits: list[str] = []  # the operator found dead without a SIGKILL of ours

    def kill_operator() -> None:
        if not operator.process.running():
            exits.append(operator.process.log_tail(20))
        operator.kill()

    killer = Fault(kill_rng, KILL_EVERY, KILL_DOWN, kill_operator, operator.start, SOAK_SECONDS)
    restarter = Fault(pg_rng, RESTART_EVERY, PG_DOWN, stop_pg, start_pg, SOAK_SECONDS)
    uids: dict[str, str] = {}  # every UID of a c-* Environment created during the run -> its name
    actions: Counter[str] = Counter()
    deadline = time.monotonic() + SOAK_SECONDS
    try:
        while time.monotonic() < deadline:
            name = rng.choice(NAMES)
            spec = {**rng.choice(SPECS), "copy": {flag: rng.random() < 0.5 for flag in COPY_FLAGS}}
            if shop.env(name) is None:
                uid = _create(shop, name, spec)
                if uid:
                    uids[uid] = name
                actions["create" if uid else "create refused (name taken)"] += 1
            else:
                actions["delete" if _delete(shop, name) else "delete (already gone)"] += 1
            pause = rng.uniform(0.2, 1.5)  # pacing between actions, not a wait for anything
            for fault in (killer, restarter):
                fault.step()
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
    finally:
        for fault in (killer, restarter):
            fault.ensure_up()

    phases = Counter(_phase(e) for e in _churn_envs(shop))
    record.number("actions", sum(actions.values()))
    record.number("creates", actions["create"])
    record.number("deletes", actions["delete"])
    record.number("operator kills", killer.count)
    record.number("PostgreSQL restarts", restarter.count)
    record.number("at the deadline", ", ".join(f"{n} {p}" for p, n in sorted(phases.items())) or "none")
    print(f"churn soak: actions {dict(actions)}, kills {killer.count}, restarts {restarter.count}, "
          f"at the deadline {dict(phases)}")

    if not operator.process.running():
        exits.append(operator.process.log_tail(20))
        operator.start()
    cleanup = time.monotonic()
    for env in _churn_envs(shop):
        _delete(shop, env["metadata"]["name"])
    try:
        wait_until(lambda: not _churn_envs(shop), timeout=CLEANUP_TIMEOUT, what="every c-* Environment to be gone")
    except WaitTimeout:
        pytest.fail(f"seed {seed}: c-* Environments not gone {CLEANUP_TIMEOUT:.0f} s after deleting them: "
                    f"{[(e['metadata']['name'], e.get('status')) for e in _churn_envs(shop)]}")
    record.number("Environments gone", f"{time.monotonic() - cleanup:.1f} s")
    left_then = _leftovers(shop, set(uids))
    record.number("left when the last Environment was gone", len(left_then))
    print(f"churn soak: {len(uids)} Environments created; left when the last was gone: {left_then}")
    # Namespaces finish terminating in the namespace controller; tagged orphans of a crash are the reaper's.
    try:
        wait_until(lambda: not _leftovers(shop, set(uids)), timeout=90,
                   what="the namespaces, databases and roles of the c-* Environments to be gone")
    except WaitTimeout:
        pytest.fail(f"seed {seed}: left behind after deleting everything: {_leftovers(shop, set(uids))}")
    record.number("seconds to clean up", f"{time.monotonic() - cleanup:.1f}")
    assert not exits, f"seed {seed}: the operator exited by itself: {exits}"
