"""`make bench` at a tiny size: the same code, so the benchmark cannot rot between real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from envbranch_testing.controlplane import REPO_ROOT

TINY = {"BENCH_SCALES": "1", "BENCH_REPEAT": "1", "BENCH_BRANCHES": "2", "BENCH_ENVIRONMENTS": "3",
        "BENCH_IDLE_SECONDS": "1", "BENCH_PGBENCH_SECONDS": "1", "BENCH_REFLINK": "0",
        "BENCH_SNAPSHOT_SCALES": "1"}
P_KEYS = ("P1_large", "P1_small_overhead_s", "P2", "P3", "P4", "P5", "P5_terminated", "P5_gentle", "P5_gentle_read",
          "P5_gentle_cost", "P5_gentle_same_server", "P5_replica", "P6", "P7_rss_mb", "P7_writes", "P8", "P9",
          "P9_first", "P9_ratio", "P10", "P11")


def test_bench_runs_and_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench"], cwd=REPO_ROOT, timeout=600, capture_output=True,
                         text=True, env={**os.environ, **TINY, "BENCH_OUT": str(out)})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(P_KEYS) <= set(results["summary"])
    row = results["engine"]["1"]
    assert row["bytes"] > 10_000_000
    for key in ("template_file_copy", "template_wal_log", "dump_full", "dump_system", "pg_dump_psql",
                "pg_dump_restore_j2", "cp_r", "P2_clone_vs_cp", "P3_dump_speedup_vs_best_manual"):
        assert row[key] > 0, key
    assert row["pgcopydb"] or row["pgcopydb_note"]
    assert results["P1"]["1"]["template"]["strategy"] == "Template"
    assert results["P1"]["1"]["dump"]["strategy"] == "Dump"
    assert results["P5"]["sessions_terminated"] == 0 and results["P5"]["tps_idle"] > 0
    gentle = results["P5"]["gentle"]
    assert gentle["spooled"] and gentle["P5_gentle_tps_ratio"] > 0 and gentle["P5_gentle_read_tps_ratio"] > 0
    assert 0 < gentle["snapshot_seconds"] < gentle["dump_seconds"]  # the snapshot ends before the load
    assert results["P5"]["gentle_same_server"]["P5_gentle_same_server_tps_ratio"] > 0
    assert results["P5"]["replica"]["rows_from"] == "standby" and results["P5"]["replica"]["P5_replica_tps_ratio"] > 0
    assert results["P6"]["branches"] == 2 and results["P6"]["P6_concurrent_vs_one"] > 0
    assert results["P7"]["environments"] == 4 and results["P7"]["P7_peak_rss_mb"] > 0  # 3 + the adopting root
    assert results["P8"] == {"skipped": "BENCH_REFLINK=0"}
    p9 = results["P9"]["1"]
    assert p9["snapshot_strategy"] == "Dump" and p9["branch_strategy"] == "Template"  # production is busy
    assert p9["first_branch_seconds"] > 0 and p9["seconds"] > 0
    assert results["P10"]["stage"] == "Done" and results["P10"]["client_queries"] > 0
    assert results["P11"]["dump_masked"] > 0 and results["P11"]["P11_masked_vs_unmasked"] > 0
    for plot in ("bench-clone-times.png", "bench-ratios.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot
