"""Kopf registrations only: each handler delegates to branching/ and maps its outcomes onto Kopf."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import kopf
from kopf._core.actions.execution import HandlerChildrenRetry

from envbranch import health, settings
from envbranch.api import common
from envbranch.branching import database, environment, reaper, schedule, servers
from envbranch.branching.errors import Transient, Waiting

_registry = kopf.OperatorRegistry()
ENVIRONMENTS = (common.GROUP, common.VERSION, common.ENVIRONMENTS)
DATABASESERVERS = (common.GROUP, common.VERSION, common.DATABASESERVERS)
KOPF_PREFIX = f"operator.{common.GROUP}"


def registry() -> kopf.OperatorRegistry:
    return _registry


@kopf.on.login(registry=_registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod, the service account; elsewhere, the kubeconfig (what `kubernetes` itself would pick)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=_registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    from envbranch import settings as ours

    settings.persistence.finalizer = common.FINALIZER
    # Kopf ignores changes to annotations under its storage prefix; a prefix of its own keeps
    # user-facing ones (envbranch.io/retry) visible to the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # our own Events tell each step
    # The thread pool bounds how many environments are reconciled at once. Kopf's per-object worker
    # limit is left unlimited: a worker holds its slot for idle_timeout (5 s) after its object's
    # last event, so a limit of N made the N+1st new branch wait ~5 s (bench P6: 20 branches 25x one).
    # Sync handlers do only short work (long copies run in the copy lane) on an executor that counts
    # what it runs, so /healthz can tell a wedged operator from a busy one.
    settings.execution.executor = health.executor(max(2, ours.current.concurrency))
    database.identify_cluster()
    if ours.current.metrics_port:
        from envbranch import metrics

        metrics.serve(ours.current.metrics_port)


class WaitRetry(HandlerChildrenRetry):
    """A wait is no error: retried like Kopf's own sub-handler waits, without an error line or Event
    each time (the Environment's conditions say what it waits for)."""


@contextlib.contextmanager
def kopf_outcomes(retry: int) -> Iterator[None]:
    """Waiting and Transient become Kopf retries: waits at their own pace, faults with backoff."""
    try:
        yield
    except Waiting as wait:
        raise WaitRetry(wait.message, delay=wait.delay) from None
    except Transient as exc:
        raise kopf.TemporaryError(f"step {exc.step}: {exc.message}", delay=min(2 ** retry, 60)) from None


@kopf.on.resume(*ENVIRONMENTS, registry=_registry)
@kopf.on.create(*ENVIRONMENTS, registry=_registry)
@kopf.on.update(*ENVIRONMENTS, registry=_registry)
def reconcile_environment(body: kopf.Body, retry: int, **_: Any) -> None:
    with kopf_outcomes(retry):
        environment.reconcile_environment(dict(body), retry)


@kopf.on.delete(*ENVIRONMENTS, registry=_registry)
def delete_environment(body: kopf.Body, retry: int, **_: Any) -> None:
    with kopf_outcomes(retry):
        environment.delete_environment(dict(body))


@kopf.daemon(*ENVIRONMENTS, registry=_registry, cancellation_timeout=5,
             when=lambda spec, **_: bool(spec.get("ttl")))
async def expire_environment(body: kopf.Body, spec: kopf.Spec, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """An asyncio task per Environment with a ttl: waiting holds no thread, so how many may wait is
    bounded by memory, not by --concurrency. Only the final delete borrows a thread, briefly."""
    # `spec` is a live view: a ttl changed meanwhile counts from the next tick.
    while (left := environment.seconds_left(dict(body), str(spec["ttl"]))) > 0:
        if await stopped.wait(min(left, 10)):
            return
    await asyncio.to_thread(environment.expire_environment, dict(body), str(spec["ttl"]))


@kopf.daemon(*ENVIRONMENTS, registry=_registry, cancellation_timeout=5,
             when=lambda spec, **_: bool((spec.get("refresh") or {}).get("schedule")))
async def schedule_refresh(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """spec.refresh.schedule: an asyncio task per scheduled Environment that asks for the refresh
    when it is due (schedule.py); the refresh itself is the reconcile's."""
    while not stopped.is_set():
        wait = await asyncio.to_thread(schedule.tick, dict(body))
        if await stopped.wait(wait):
            return


@kopf.on.probe(registry=_registry, id="executor")
async def executor_progress(**_: Any) -> dict[str, int]:
    """Fails /healthz when the handler executor is wedged (see health.py); async, so it answers even
    when every executor thread is stuck."""
    executor = health.current()
    if executor is None:
        return {}
    why = executor.stalled(settings.current.stall_timeout)
    if why:
        raise kopf.PermanentError(f"the operator makes no progress: {why}")
    running, queued, _idle = executor.snapshot()
    return {"running": running, "queued": queued, "workers": executor.workers}


@kopf.on.resume(*DATABASESERVERS, registry=_registry)
@kopf.on.create(*DATABASESERVERS, registry=_registry)
@kopf.on.update(*DATABASESERVERS, registry=_registry)
def probe_server(body: kopf.Body, **_: Any) -> None:
    servers.probe_server(dict(body))
    servers.release_unused_admin_secrets(body["metadata"]["namespace"])


@kopf.on.delete(*DATABASESERVERS, registry=_registry)
def release_server(body: kopf.Body, retry: int, **_: Any) -> None:
    with kopf_outcomes(retry):
        servers.release_server(dict(body), first_attempt=retry == 0)


@kopf.timer(*DATABASESERVERS, registry=_registry, interval=settings.current.probe_interval)
def reprobe_server(body: kopf.Body, **_: Any) -> None:
    servers.probe_server(dict(body))


@kopf.timer(*DATABASESERVERS, registry=_registry, interval=settings.current.reaper_interval)
def reap_orphans(body: kopf.Body, **_: Any) -> None:
    reaper.reap_orphans(dict(body))
