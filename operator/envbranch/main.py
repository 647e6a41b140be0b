"""The operator's entry point: `python -m envbranch` and `envbranch operator`."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from envbranch import settings
from envbranch.api.environment import parse_rate


def parse_args(argv: Sequence[str] | None = None) -> settings.OperatorSettings:
    p = argparse.ArgumentParser(prog="envbranch-operator", description="Run the envbranch operator.")
    p.add_argument("-n", "--namespace", action="append", default=[],
                   help="watch only this namespace (repeatable); default: all namespaces")
    p.add_argument("--peering", action="store_true",
                   help="coordinate with other replicas through a Kopf peering object (HA)")
    p.add_argument("--peering-name", default="envbranch")
    p.add_argument("--liveness", default=os.environ.get("ENVBRANCH_LIVENESS"),
                   help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("ENVBRANCH_METRICS_PORT", "0")) or None)
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("ENVBRANCH_CONCURRENCY", "8")),
                   help="how many environments are reconciled at once")
    p.add_argument("--copy-concurrency", type=int,
                   default=int(os.environ.get("ENVBRANCH_COPY_CONCURRENCY", "2")),
                   help="how many long copies (Full mode by Dump) run at once; more wait in the copy lane")
    p.add_argument("--stall-timeout", type=float, default=float(os.environ.get("ENVBRANCH_STALL_TIMEOUT", "300")),
                   help="seconds the handler executor may be saturated without progress before /healthz fails")
    p.add_argument("--json-logs", action="store_true", default=os.environ.get("ENVBRANCH_JSON_LOGS") == "1")
    p.add_argument("--spool-dir", default=os.environ.get("ENVBRANCH_SPOOL_DIR") or None,
                   help="directory for the rows of Dumps with spec.dump.spool (read fast, loaded at maxRate); "
                   "unset: such Dumps stream at their maxRate")
    p.add_argument("--spool-limit", default=os.environ.get("ENVBRANCH_SPOOL_LIMIT") or None,
                   help="bytes the spool may hold, as a quantity (e.g. 20Gi: the chart's emptyDir sizeLimit); "
                   "a copy that would pass it streams at its maxRate")
    a = p.parse_args(argv)
    return settings.OperatorSettings(
        namespaces=tuple(a.namespace), standalone=not a.peering, peering_name=a.peering_name,
        liveness_endpoint=a.liveness, metrics_port=a.metrics_port, concurrency=a.concurrency,
        copy_concurrency=a.copy_concurrency, stall_timeout=a.stall_timeout, json_logs=a.json_logs,
        spool_dir=a.spool_dir, spool_limit=parse_rate(a.spool_limit) if a.spool_limit else None)


def main(argv: Sequence[str] | None = None) -> int:
    import kopf

    opts = parse_args(argv)
    # Kopf's own logging setup, so its records and ours share one format (JSON for log shippers).
    kopf.configure(log_format=kopf.LogFormat.JSON if opts.json_logs else kopf.LogFormat.FULL)
    logging.getLogger("envbranch").setLevel(logging.INFO)
    from envbranch import handlers
    from envbranch.branching.context import OperatorContext

    ctx = OperatorContext.build(opts)  # the operator's one state object, handed to every handler
    kopf.run(
        registry=handlers.registry(ctx),
        standalone=opts.standalone,
        peering_name=None if opts.standalone else opts.peering_name,
        clusterwide=not opts.namespaces,
        namespaces=list(opts.namespaces),
        liveness_endpoint=opts.liveness_endpoint,
    )
    return 0
