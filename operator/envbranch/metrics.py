"""Prometheus metrics on the operator's metrics port."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

BRANCH_SECONDS = Histogram("envbranch_branch_duration_seconds", "Time from branching start to Active or Failed",
                           ["strategy", "mode", "result"], buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
STEP_SECONDS = Histogram("envbranch_step_duration_seconds", "Duration of each reconcile step", ["step"])
BYTES_COPIED = Counter("envbranch_bytes_copied_total", "Database bytes copied into branches", ["strategy"])
ROLLBACKS = Counter("envbranch_rollbacks_total", "Branches rolled back", ["reason"])
ENVIRONMENTS = Gauge("envbranch_environments", "Environments by phase", ["phase"])

_started = threading.Event()


def serve(port: int) -> None:
    if not _started.is_set():
        start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from outside the Pod
        _started.set()
