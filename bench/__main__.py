"""Measures, on the same pgbench database in the same run (ratios, not absolute times):

- P2 template clone MB/s divided by `cp -r` of the database's files on the same disk;
- P3 envbranch's online Dump against `pg_dump | psql` and `pg_dump -Fd -j2` + `pg_restore -j2`;
- P4 System mode at the large scale divided by System mode at the small scale;
- and the raw time of every strategy and mode. Results go to bench/results.json.

Scales come from BENCH_SCALES (pgbench -s values, default "1,10"; 67 is about 1 GB) and
repetitions from BENCH_REPEAT (default 3, the median is kept).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from envbranch import postgres as engine
from envbranch.testing.postgres import Postgres

OUT = Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent / "results.json")


def timed(fn: Callable[[], object], cleanup: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        cleanup()
    return round(statistics.median(samples), 3)


def main() -> int:
    scales = [int(s) for s in os.environ.get("BENCH_SCALES", "1,10").split(",")]
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    results: dict[str, object] = {"scales": {}, "repeat": repeat}
    with Postgres() as pg:
        admin = engine.Server(pg.host, pg.port, pg.admin.user, pg.admin.password)
        superuser = engine.Server(pg.host, pg.port, pg.superuser.user, pg.superuser.password)
        su_env = {**os.environ, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.superuser.user,
                  "PGPASSWORD": pg.superuser.password}
        tools = pg.client_tools()
        for scale in scales:
            src = f"pgbench_s{scale}"
            with pg.connect(role=pg.admin) as conn:
                conn.execute(f"CREATE DATABASE {src}")
            subprocess.run([str(pg.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), src],
                           env={**su_env, "PGUSER": pg.admin.user, "PGPASSWORD": pg.admin.password},
                           check=True, capture_output=True)
            with pg.connect() as conn:
                size = int(conn.execute("SELECT pg_database_size(%s)", (src,)).fetchone()[0])  # type: ignore[index]
                oid = int(conn.execute("SELECT oid FROM pg_database WHERE datname = %s",
                                       (src,)).fetchone()[0])  # type: ignore[index]
                conn.execute("CHECKPOINT")

            def drop(db: str = "bench_dst") -> None:
                engine.drop_database(superuser, db)  # the manual copies are made as superuser

            def clone(mode: str, strategy: str, method: str = "FILE_COPY") -> Callable[[], object]:
                return lambda: engine.clone_database(admin, src, admin, "bench_dst", mode=mode,  # type: ignore[arg-type]
                                                     strategy=strategy, uid=str(uuid.uuid4()),  # type: ignore[arg-type]
                                                     template_strategy=method)  # type: ignore[arg-type]

            def pg_dump_psql() -> None:
                with pg.connect() as conn:
                    conn.execute("CREATE DATABASE bench_dst")
                subprocess.run(f"'{tools.path('pg_dump')}' {src} | '{tools.path('psql')}' -q -d bench_dst "
                               "-v ON_ERROR_STOP=1 >/dev/null", shell=True, check=True, env=su_env)

            def dump_restore_j2() -> None:
                with tempfile.TemporaryDirectory() as tmp, pg.connect() as conn:
                    conn.execute("CREATE DATABASE bench_dst")
                    subprocess.run([tools.path("pg_dump"), "-Fd", "-j2", "-f", f"{tmp}/d", src], env=su_env, check=True)
                    subprocess.run([tools.path("pg_restore"), "-j2", "-d", "bench_dst", f"{tmp}/d"], env=su_env,
                                   check=True)

            def cp_files() -> None:
                subprocess.run(["cp", "-r", str(pg.data_dir / "base" / str(oid)), str(pg.base_dir / "cp-copy")],
                               check=True)

            row = {
                "bytes": size,
                "template_file_copy": timed(clone("Full", "Template"), drop, repeat),
                "template_wal_log": timed(clone("Full", "Template", "WAL_LOG"), drop, repeat),
                "dump_full": timed(clone("Full", "Dump"), drop, repeat),
                "dump_system": timed(clone("System", "Dump"), drop, repeat),
                "pg_dump_psql": timed(pg_dump_psql, drop, repeat),
                "pg_dump_restore_j2": timed(dump_restore_j2, drop, repeat),
                "cp_r": timed(cp_files, lambda: shutil.rmtree(pg.base_dir / "cp-copy"), repeat),
            }
            row["P2_template_vs_cp"] = round(row["cp_r"] / row["template_file_copy"], 2)
            row["P3_dump_speedup_vs_best_manual"] = round(
                min(row["pg_dump_psql"], row["pg_dump_restore_j2"]) / row["dump_full"], 2)
            results["scales"][str(scale)] = row  # type: ignore[index]
            print(json.dumps({scale: row}))
        by_scale = results["scales"]  # type: ignore[assignment]
        if len(scales) > 1:
            results["P4_system_large_vs_small"] = round(
                by_scale[str(scales[-1])]["dump_system"] / by_scale[str(scales[0])]["dump_system"], 2)  # type: ignore[index]
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
