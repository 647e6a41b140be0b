"""The operator's state lives in its OperatorContext: built from the settings, shared by nothing
else, and what the server cache, the reaper and the tags read."""

from __future__ import annotations

import time
from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World, fake_context

from envbranch import postgres as engine
from envbranch.branching import connection, database, reaper
from envbranch.branching.connection import ServerCache
from envbranch.branching.context import OperatorContext
from envbranch.branching.reaper import ReaperState
from envbranch.kube import namespaces
from envbranch.settings import OperatorSettings


def test_a_context_is_built_from_its_settings_and_shares_nothing() -> None:
    one = OperatorContext.build(OperatorSettings(concurrency=6, copy_concurrency=3))
    two = OperatorContext.build(OperatorSettings())
    assert (one.executor.workers, one.copy_lane.slots) == (6, 3)
    assert (two.executor.workers, two.copy_lane.slots) == (8, 2)
    assert one.probe_lock("uid-a") is one.probe_lock("uid-a") is not one.probe_lock("uid-b")
    assert one.probe_lock("uid-a") is not two.probe_lock("uid-a")
    for part in ("kube", "servers", "reaper", "clone_support", "copy_lane", "executor", "probe_locks"):
        assert getattr(one, part) is not getattr(two, part), part
    assert one.cluster is None and two.cluster is None


def test_the_spool_comes_from_the_command_line_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from envbranch.main import parse_args

    monkeypatch.delenv("ENVBRANCH_SPOOL_DIR", raising=False)
    assert OperatorContext.build(parse_args([])).spool is None  # no spool: spooled copies stream
    spool = OperatorContext.build(parse_args(["--spool-dir=/var/spool/envbranch", "--spool-limit=20Gi"])).spool
    assert spool is not None and (spool.directory, spool.limit) == ("/var/spool/envbranch", 20 * 1024**3)
    monkeypatch.setenv("ENVBRANCH_SPOOL_DIR", "/spool")
    spool = OperatorContext.build(parse_args([])).spool
    assert spool is not None and (spool.directory, spool.limit) == ("/spool", None)


def test_the_cluster_is_named_at_start_up_only_in_its_own_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespaces, "cluster_uid", lambda kube: "uid-of-kube-system")
    ctx, other = fake_context(), fake_context()
    assert ctx.identify_cluster() == "uid-of-kube-system"
    assert ctx.cluster == "uid-of-kube-system" and other.cluster is None


def test_admin_connections_are_read_once_per_interval_and_carry_the_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[dict[str, Any]] = []

    def read_server(kube: object, project: str, name: str, **kwargs: Any) -> engine.Server:
        reads.append(kwargs)
        return engine.Server("db.example", 5432, "admin", "pw", **kwargs)

    monkeypatch.setattr(connection, "read_server", read_server)
    ctx = fake_context()
    ctx.cluster = "c-1"
    first = connection.server_info(ctx, PROJECT, SERVER)
    assert connection.server_info(ctx, PROJECT, SERVER) is first and len(reads) == 1
    assert first.cluster == "c-1" and first.clone_support is ctx.clone_support
    connection.server_info(fake_context(), PROJECT, SERVER)  # another context: a cache of its own
    assert len(reads) == 2


def test_the_server_cache_forgets_after_its_seconds() -> None:
    server = engine.Server("db.example", 5432, "admin", "pw")
    kept, brief = ServerCache(), ServerCache(seconds=0)
    kept.put(PROJECT, SERVER, server)
    brief.put(PROJECT, SERVER, server)
    assert kept.get(PROJECT, SERVER) is server and kept.get(PROJECT, "other") is None
    assert brief.get(PROJECT, SERVER) is None


def test_each_physical_server_is_reaped_once_per_interval() -> None:
    state, now = ReaperState(), time.monotonic()
    assert state.due(("db", 5432), now, interval=300)
    assert not state.due(("db", 5432), now + 100, interval=300)
    assert state.due(("other", 5432), now + 100, interval=300)
    assert state.due(("db", 5432), now + 280, interval=300)   # 90% of the interval: a timer's jitter


def test_the_reaper_drops_orphans_after_the_grace_its_context_sets(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    live = world.add_active_source()["metadata"]["uid"]
    world.pg.databases.update({(SERVER, "shop_production"): live, (SERVER, "shop_gone"): "uid-of-nobody"})

    def find_tagged(ctx: OperatorContext, project: str, server: str) -> list[tuple[str, str, str]]:
        assert ctx is world.ctx
        return [("database", name, str(uid)) for (_, name), uid in sorted(world.pg.databases.items())]

    monkeypatch.setattr(database, "find_tagged", find_tagged)
    server = world.kube.objects[("databaseservers", PROJECT, SERVER)]
    world.ctx.settings = OperatorSettings(reaper_grace=3600, reaper_interval=0)
    assert reaper.reap_orphans(world.ctx, server) == []              # first seen: within its grace
    world.ctx.settings = OperatorSettings(reaper_grace=0, reaper_interval=0)
    assert reaper.reap_orphans(world.ctx, server) == ["database shop_gone"]
    assert set(world.pg.databases) == {(SERVER, "shop_production")}
