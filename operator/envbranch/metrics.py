"""Prometheus metrics on the operator's metrics port."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from envbranch.branching.context import OperatorContext

log = logging.getLogger(__name__)

BRANCH_SECONDS = Histogram("envbranch_branch_duration_seconds", "Time from branching start to Active or Failed",
                           ["strategy", "mode", "result"], buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
STEP_SECONDS = Histogram("envbranch_step_duration_seconds", "Duration of each reconcile step", ["step"])
BYTES_COPIED = Counter("envbranch_bytes_copied_total", "Database bytes copied into branches", ["strategy"])
ROLLBACKS = Counter("envbranch_rollbacks_total", "Branches rolled back", ["reason"])
REAPER_PASSES = Counter("envbranch_reaper_passes_total", "Orphan reaper passes over a PostgreSQL server (host:port); "
                        "skipped: a DatabaseServer's timer fired when that server had been reaped this interval",
                        ["server", "result"])


class EnvironmentsByPhase(Collector):
    """envbranch_environments{phase}: counted from the API at scrape time, so it is never stale."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from envbranch.kube import resources

        gauge = GaugeMetricFamily("envbranch_environments", "Environments by phase", labels=["phase"])
        try:
            phases = Tally((e.get("status") or {}).get("phase") or "Pending"
                           for e in resources.list_in(self.ctx.kube, resources.ENVIRONMENTS))
        except Exception as exc:  # a scrape must not fail because the API hiccupped
            log.warning("could not count environments: %s", type(exc).__name__)
            return
        for phase in ("Pending", "Branching", "Active", "Failed", "Deleting"):
            gauge.add_metric([phase], phases.get(phase, 0))
        yield gauge


class Occupancy(Collector):
    """envbranch_handler_threads{state} and envbranch_copies{state}: the handler executor's and the
    copy lane's load, read at scrape time (a full executor with work queued is what liveness watches)."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        executor, lane = self.ctx.executor, self.ctx.copy_lane
        threads = GaugeMetricFamily("envbranch_handler_threads", "Handler executor threads and queued handler "
                                    "calls", labels=["state"])
        running, queued, _ = executor.snapshot()
        for state, value in (("busy", running), ("queued", queued), ("size", executor.workers)):
            threads.add_metric([state], value)
        yield threads
        copies = GaugeMetricFamily("envbranch_copies", "Long copies in the copy lane", labels=["state"])
        running, queued = lane.stats()
        for state, value in (("running", running), ("queued", queued), ("slots", lane.slots)):
            copies.add_metric([state], value)
        yield copies


def serve(ctx: OperatorContext, port: int) -> None:
    """Once per process (the operator's start-up): the gauges read `ctx` at scrape time."""
    REGISTRY.register(EnvironmentsByPhase(ctx))
    REGISTRY.register(Occupancy(ctx))
    start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from outside the Pod
