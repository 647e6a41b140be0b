"""handlers.registry(ctx): a registry per context, its timers paced by the context's settings, every
handler handing the context on, and the handler ids unchanged (Kopf stores progress under them)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from envbranch import handlers
from envbranch.api import common
from envbranch.branching import environment, reaper
from envbranch.branching.context import OperatorContext
from envbranch.settings import OperatorSettings


def _handlers(reg: kopf.OperatorRegistry) -> list[Any]:
    return [h for r in (reg._activities, reg._spawning, reg._changing) for h in r.get_all_handlers()]


def _handler(reg: kopf.OperatorRegistry, id_: str) -> Any:
    return next(h for h in _handlers(reg) if h.id == id_)


def test_the_handler_ids_are_those_of_the_module_level_handlers_before() -> None:
    reg = handlers.registry(OperatorContext.build(OperatorSettings()))
    assert {(type(h).__name__, h.id) for h in _handlers(reg)} == {
        ("ActivityHandler", "login"), ("ActivityHandler", "configure"), ("ActivityHandler", "executor"),
        ("DaemonHandler", "expire_environment"), ("DaemonHandler", "schedule_refresh"),
        ("TimerHandler", "reprobe_server"),
        ("TimerHandler", "reap_orphans"), ("ChangingHandler", "reconcile_environment"),
        ("ChangingHandler", "delete_environment"), ("ChangingHandler", "probe_server"),
        ("ChangingHandler", "release_server")}


def test_timer_intervals_come_from_each_contexts_settings() -> None:
    fast = handlers.registry(OperatorContext.build(OperatorSettings(probe_interval=7, reaper_interval=11)))
    slow = handlers.registry(OperatorContext.build(OperatorSettings(probe_interval=70, reaper_interval=110)))
    assert (_handler(fast, "reprobe_server").interval, _handler(fast, "reap_orphans").interval) == (7, 11)
    assert (_handler(slow, "reprobe_server").interval, _handler(slow, "reap_orphans").interval) == (70, 110)


def test_handlers_hand_their_own_context_to_branching(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, OperatorContext]] = []
    monkeypatch.setattr(environment, "reconcile_environment", lambda ctx, body, retry: seen.append(("env", ctx)))
    monkeypatch.setattr(reaper, "reap_orphans", lambda ctx, body: seen.append(("reap", ctx)) or [])
    one, two = OperatorContext.build(OperatorSettings()), OperatorContext.build(OperatorSettings())
    reg_one, reg_two = handlers.registry(one), handlers.registry(two)
    _handler(reg_one, "reconcile_environment").fn(body={"metadata": {}}, retry=0)
    _handler(reg_two, "reap_orphans").fn(body={"metadata": {}})
    assert seen == [("env", one), ("reap", two)]


def test_the_liveness_probe_reads_the_contexts_executor() -> None:
    ctx = OperatorContext.build(OperatorSettings(concurrency=5, stall_timeout=0))
    try:
        assert handlers.executor_progress(ctx) == {"running": 0, "queued": 0, "workers": 5}
        ctx.executor.queued = 1  # as if a handler waited for a thread, with no progress since
        with pytest.raises(kopf.PermanentError, match="makes no progress"):
            handlers.executor_progress(ctx)
    finally:
        ctx.executor.shutdown()


def test_start_up_installs_the_executor_and_names_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from envbranch.kube import namespaces

    monkeypatch.setattr(namespaces, "cluster_uid", lambda kube: "kube-system-uid")
    ctx = OperatorContext.build(OperatorSettings())
    settings = kopf.OperatorSettings()
    _handler(handlers.registry(ctx), "configure").fn(settings=settings)
    assert settings.execution.executor is ctx.executor and settings.persistence.finalizer == common.FINALIZER
    assert ctx.cluster == "kube-system-uid"
