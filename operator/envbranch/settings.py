"""Operator settings, from the command line or ENVBRANCH_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()          # empty: every namespace
    standalone: bool = True                   # no peering; False lets replicas coordinate
    peering_name: str = "envbranch"
    liveness_endpoint: str | None = None      # e.g. http://0.0.0.0:8080/healthz
    metrics_port: int | None = None
    concurrency: int = 8                      # environments reconciled at once
    copy_concurrency: int = 2                 # long copies (Full Dumps) run at once, in their own lane
    stall_timeout: float = 300                # /healthz fails when the executor is saturated this long
    json_logs: bool = False
    # Where spooled gentle copies keep the rows between reading the source and loading the branch;
    # None: no spool (those copies stream at their cap).
    spool_dir: str | None = None
    spool_limit: int | None = None            # bytes; None: the file system's free space only
    # Timers, in seconds; tests shorten them through the environment.
    probe_interval: float = field(default_factory=lambda: _env_float("ENVBRANCH_PROBE_INTERVAL", 60))
    reaper_interval: float = field(default_factory=lambda: _env_float("ENVBRANCH_REAPER_INTERVAL", 300))
    reaper_grace: float = field(default_factory=lambda: _env_float("ENVBRANCH_REAPER_GRACE", 600))
    source_wait: float = field(default_factory=lambda: _env_float("ENVBRANCH_SOURCE_WAIT", 5))
    # A refresh ends the sessions of the database it replaces this long after the new copy is ready.
    refresh_grace: float = field(default_factory=lambda: _env_float("ENVBRANCH_REFRESH_GRACE", 10))
    # Test-only: honour the envbranch.io/inject-fault annotation (never set in production).
    fault_injection: bool = field(default_factory=lambda: os.environ.get("ENVBRANCH_FAULT_INJECTION") == "1")

