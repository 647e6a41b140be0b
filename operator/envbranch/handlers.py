"""Kopf registrations only: each handler delegates to branching/ and maps its outcomes onto Kopf.

`registry(ctx)` registers them with a new Kopf registry, closed over the operator's context: the
timer intervals come from its settings, and every handler hands it to the branching entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import kopf
from kopf._core.actions.execution import HandlerChildrenRetry

from envbranch.api import common
from envbranch.branching import environment, reaper, schedule, servers
from envbranch.branching.context import OperatorContext
from envbranch.branching.errors import Transient, Waiting

ENVIRONMENTS = (common.GROUP, common.VERSION, common.ENVIRONMENTS)
DATABASESERVERS = (common.GROUP, common.VERSION, common.DATABASESERVERS)
KOPF_PREFIX = f"operator.{common.GROUP}"


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


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod, the service account; elsewhere, the kubeconfig (what `kubernetes` itself would pick)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def configure_kopf(ctx: OperatorContext, settings: kopf.OperatorSettings) -> None:
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
    settings.execution.executor = ctx.executor


def executor_progress(ctx: OperatorContext) -> dict[str, int]:
    """Fails /healthz when the handler executor is wedged (see health.py)."""
    why = ctx.executor.stalled(ctx.settings.stall_timeout)
    if why:
        raise kopf.PermanentError(f"the operator makes no progress: {why}")
    running, queued, _idle = ctx.executor.snapshot()
    return {"running": running, "queued": queued, "workers": ctx.executor.workers}


def registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    """A Kopf registry holding the operator's handlers, each given `ctx`."""
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg, id="login")(login)
    _register_startup(reg, ctx)
    _register_environments(reg, ctx)
    _register_servers(reg, ctx)
    return reg


# Each handler keeps the id it had as a module-level function: Kopf stores progress under it in the
# objects' annotations, so an upgraded operator resumes what an older one left mid-way.
def _register_startup(reg: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.startup(registry=reg, id="configure")
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(ctx, settings)
        ctx.identify_cluster()  # before any handler connects to a server: the tags name it
        if ctx.settings.metrics_port:
            from envbranch import metrics

            metrics.serve(ctx, ctx.settings.metrics_port)

    @kopf.on.probe(registry=reg, id="executor")
    async def executor_probe(**_: Any) -> dict[str, int]:
        # async, so it answers even when every executor thread is stuck
        return executor_progress(ctx)


def _register_environments(reg: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.resume(*ENVIRONMENTS, registry=reg, id="reconcile_environment")
    @kopf.on.create(*ENVIRONMENTS, registry=reg, id="reconcile_environment")
    @kopf.on.update(*ENVIRONMENTS, registry=reg, id="reconcile_environment")
    def reconcile_environment(body: kopf.Body, retry: int, **_: Any) -> None:
        with kopf_outcomes(retry):
            environment.reconcile_environment(ctx, dict(body), retry)

    @kopf.on.delete(*ENVIRONMENTS, registry=reg, id="delete_environment")
    def delete_environment(body: kopf.Body, retry: int, **_: Any) -> None:
        with kopf_outcomes(retry):
            environment.delete_environment(ctx, dict(body))

    @kopf.daemon(*ENVIRONMENTS, registry=reg, id="expire_environment", cancellation_timeout=5,
                 when=lambda spec, **_: bool(spec.get("ttl")))
    async def expire_environment(body: kopf.Body, spec: kopf.Spec, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """An asyncio task per Environment with a ttl: waiting holds no thread, so how many may wait is
        bounded by memory, not by --concurrency. Only the final delete borrows a thread, briefly."""
        # `spec` is a live view: a ttl changed meanwhile counts from the next tick.
        while (left := environment.seconds_left(dict(body), str(spec["ttl"]))) > 0:
            if await stopped.wait(min(left, 10)):
                return
        await asyncio.to_thread(environment.expire_environment, ctx, dict(body), str(spec["ttl"]))

    @kopf.daemon(*ENVIRONMENTS, registry=reg, id="schedule_refresh", cancellation_timeout=5,
                 when=lambda spec, **_: bool((spec.get("refresh") or {}).get("schedule")))
    async def schedule_refresh(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """spec.refresh.schedule: an asyncio task per scheduled Environment that asks for the refresh
        when it is due (schedule.py); the refresh itself is the reconcile's."""
        while not stopped.is_set():
            wait = await asyncio.to_thread(schedule.tick, ctx, dict(body))
            if await stopped.wait(wait):
                return


def _register_servers(reg: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.resume(*DATABASESERVERS, registry=reg, id="probe_server")
    @kopf.on.create(*DATABASESERVERS, registry=reg, id="probe_server")
    @kopf.on.update(*DATABASESERVERS, registry=reg, id="probe_server")
    def probe_server(body: kopf.Body, **_: Any) -> None:
        servers.probe_server(ctx, dict(body))
        servers.release_unused_admin_secrets(ctx.kube, body["metadata"]["namespace"])

    @kopf.on.delete(*DATABASESERVERS, registry=reg, id="release_server")
    def release_server(body: kopf.Body, retry: int, **_: Any) -> None:
        with kopf_outcomes(retry):
            servers.release_server(ctx, dict(body), first_attempt=retry == 0)

    @kopf.timer(*DATABASESERVERS, registry=reg, id="reprobe_server", interval=ctx.settings.probe_interval)
    def reprobe_server(body: kopf.Body, **_: Any) -> None:
        servers.probe_server(ctx, dict(body))

    @kopf.timer(*DATABASESERVERS, registry=reg, id="reap_orphans", interval=ctx.settings.reaper_interval)
    def reap_orphans(body: kopf.Body, **_: Any) -> None:
        reaper.reap_orphans(ctx, dict(body))
