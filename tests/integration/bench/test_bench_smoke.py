"""`make bench` at a tiny size: the same code, so the benchmark cannot rot between real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from envbranch.testing.controlplane import REPO_ROOT


def test_bench_runs_and_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "bench"], cwd=REPO_ROOT, check=True, timeout=600, capture_output=True,
                   env={**os.environ, "BENCH_SCALES": "1", "BENCH_REPEAT": "1", "BENCH_OUT": str(out)})
    row = json.loads(out.read_text())["scales"]["1"]
    for key in ("template_file_copy", "template_wal_log", "dump_full", "dump_system", "pg_dump_psql",
                "pg_dump_restore_j2", "cp_r", "P2_template_vs_cp", "P3_dump_speedup_vs_best_manual"):
        assert row[key] > 0, key
    assert row["bytes"] > 10_000_000
