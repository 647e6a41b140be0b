"""`make bench`: envbranch against what a user would do by hand, on the same pgbench data in the same
run, as ratios (the machine is shared and noisy; absolute times mean little). Writes
bench/results.json, docs/bench-*.png and the README's Performance table.

- P1 Environment apply → Ready over the raw SQL clone of the same database (Template and Dump);
- P2 full clone MB/s over `cp -r` of the database's files on the same disk;
- P3 the online Dump against `pg_dump | psql`, `pg_dump -Fd -j2` + `pg_restore -j2` and pgcopydb;
- P4 System mode at the large scale over the small scale;
- P5 pgbench TPS on the source during online clones over idle, and source sessions terminated; the
  same during a spooled gentle Dump into a branch server (P5 gentle: maxRate, streams; also while its
  snapshot is held, and a gentle Dump streamed into the source's own server for comparison) and
  during a Dump that reads a streaming standby (P5 replica: pgbench on the primary, the branch
  written to another server; the primary and its pgbench pinned to one CPU, the standby, that
  server, the spool and the copy to the others, as on two machines);
- P6 concurrent branches over one branch; P7 operator peak RSS with many Environments and API
  writes while idle; P8 PostgreSQL 18's reflink clone on an XFS loop file system;
- P9 apply → Ready of a Full branch of a sealed snapshot of a busy production, small and large; P10
  the window in which a refresh in place cuts a branch's clients off (both on the XFS file system).
- P11 a masked Dump's throughput over the unmasked Dump's (the large tables' text columns hashed).

Settings (environment): BENCH_SCALES (pgbench -s, default "1,67": about 23 MB and 1 GB),
BENCH_REPEAT (default 3, the median is kept), BENCH_BRANCHES (20), BENCH_ENVIRONMENTS (500),
BENCH_IDLE_SECONDS (30), BENCH_PGBENCH_SECONDS (P5 minimum, 10), BENCH_GENTLE_RATE (P5 gentle's maxRate,
16Mi), BENCH_GENTLE_STREAMS (1), BENCH_REFLINK (1), BENCH_SNAPSHOT_SCALES (P9 and P10, "34,340": about 0.5 GB
and 5 GB), BENCH_OUT (results elsewhere; then no README or docs/
change).

Every server runs with production durability (fsync, full_page_writes and synchronous_commit on, the
PostgreSQL defaults); the fast settings are the test suite's only.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from bench import cluster, engine, masking, reflink, report, snapshots
from bench.common import Bench, Settings, ratio
from envbranch_testing.postgres import Postgres

NOTES = [
    "P1 and P6 run through the operator (a subprocess, local control plane) against roots that adopt "
    "the pgbench databases; the raw clone is the engine call measured in the same run.",
    "P7's Environments are roots with a ttl of 72h adopting a namespace each and the small database: "
    "Active objects the operator watches, each with an expiry waiting, cheap to create; writes are the "
    "API server's write requests by resource "
    "(its own Lease renewals excluded).",
]


def log(what: str, value: Any) -> None:
    print(f"{what}: {json.dumps(value)}", file=sys.stderr, flush=True)


def main() -> int:
    s = Settings.from_env()
    results: dict[str, Any] = {"scales_measured": s.scales, "repeat": s.repeat, "cpus": os.cpu_count(),
                               "engine": {}, "notes": list(NOTES)}

    def save() -> None:
        s.out.parent.mkdir(parents=True, exist_ok=True)
        s.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")

    small, large = s.scales[0], s.scales[-1]
    with Postgres(durable=True) as pg:  # production durability: the ratios are what users see
        b = Bench(pg, s)
        results["postgres"] = pg.version.split()[0]
        for scale in s.scales:
            b.sizes[scale] = b.create_pgbench(engine.source_name(scale), scale)
        for scale in s.scales:
            row = engine.measure_scale(b, scale)
            results["engine"][str(scale)] = row
            log(f"engine scale {scale}", row)
            if note := row.get("pgcopydb_note"):
                results["notes"].append(note)
            save()
        results["P4_system_large_vs_small"] = ratio(results["engine"][str(large)]["dump_system"],
                                                    results["engine"][str(small)]["dump_system"])
        results["P5"] = engine.online_clone(b, engine.source_name(large), results["engine"][str(large)]["dump_full"])
        log("P5", results["P5"])
        results["P11"] = masking.masked_dump(b, large)
        log("P11", results["P11"])
        save()
        raw = {scale: results["engine"][str(scale)] for scale in s.scales}
        with cluster.cluster(b) as c:
            results["P1"] = cluster.operator_overhead(c, [small, large] if large != small else [small], raw,
                                                      s.repeat)
            log("P1", results["P1"])
            save()
            one = results["P1"][str(small)]["template"]["operator_seconds"]
            results["P6"] = cluster.concurrent_branches(c, small, s.branches, one)
            log("P6", results["P6"])
            save()
            results["P7"] = cluster.many_environments(c, engine.source_name(small), s.environments,
                                                      s.idle_seconds)
            log("P7", results["P7"])
            save()
    results["P8"] = reflink.reflink_clone(b, large)
    log("P8", results["P8"])
    if "error" in results["P8"]:
        results["notes"].append(f"P8 not measured: {results['P8']['error']}")
    results.update(snapshots.measure(s, s.snapshot_scales, s.repeat))
    log("P9", results["P9"])
    log("P10", results["P10"])
    results["summary"] = report.summary(results)
    save()
    results["plots"] = [str(p.relative_to(s.docs.parent)) if s.readme else p.name
                        for p in report.plot(results, s.docs)]
    save()
    if s.readme:
        report.update_readme(s.readme, results)
    print(f"wrote {s.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
