"""The P numbers, their targets, the README table and the plots, all from results.json."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    target: str
    higher_is_better: bool
    bound: float


TARGETS = (
    Target("P1_large", "apply → Ready / raw SQL clone, large (Template; Dump)", "≤ 1.2", False, 1.2),
    Target("P1_small_overhead_s", "apply → Ready minus raw SQL clone, small (seconds)", "≤ 1 s", False, 1.0),
    Target("P2", "full clone MB/s / `cp -r` (then `sync`) MB/s", "≥ 0.9", True, 0.9),
    Target("P3", "Dump speed-up over the best of pg_dump \\| psql, -Fd -j2, pgcopydb (large)", "≥ 1.3", True, 1.3),
    Target("P4", "System mode large / small", "≤ 1.2", False, 1.2),
    Target("P5", "source TPS during a Dump clone / idle", "≥ 0.8", True, 0.8),
    Target("P5_terminated", "source sessions terminated", "0", False, 0),
    Target("P5_gentle", "source TPS during a spooled gentle Dump ({gentle}) into a branch server / idle", "≥ 0.8",
           True, 0.8),
    Target("P5_gentle_read", "the same, while its snapshot is held (the read at full speed, {held})", "—", True, 0),
    Target("P5_gentle_cost", "gentle Dump time / full-speed Dump time, under load (the price)", "—", False, 0),
    Target("P5_gentle_same_server", "source TPS during a gentle Dump streamed into the source's own server / idle",
           "—", True, 0),
    Target("P5_replica", "primary TPS during a Dump read from its standby / idle (primary on its own CPU)", "≥ 0.95",
           True, 0.95),
    Target("P6", "{branches} concurrent branches / one branch (wall)", "≤ 3", False, 3.0),
    Target("P7_rss_mb", "operator peak RSS with {environments} Environments (MB)", "≤ 150", False, 150),
    Target("P7_writes", "API writes in an idle period", "0", False, 0),
    Target("P8", "reflink clone of the large database (seconds)", "< 1 s", False, 1.0),
    Target("P9", "apply → Ready of a Full branch of a sealed snapshot of a busy production, {snapshots} (s)",
           "≤ 1 s", False, 1.0),
    Target("P9_first", "the same, the first branch after the snapshot was made (s)", "≤ 1 s", False, 1.0),
    Target("P9_ratio", "P9 larger / smaller", "≤ 1.2", False, 1.2),
    Target("P10", "refresh in place of the {refreshed} environment: clients cut off (seconds)", "≤ 1 s", False, 1.0),
    Target("P11", "masked Dump throughput / unmasked Dump, large (fillers hashed)", "≥ 0.8", True, 0.8),
)


INFORMATIVE = ("P5_gentle_read", "P5_gentle_cost", "P5_gentle_same_server")


def label(t: Target) -> str:
    """The row's name: P1, P5, …; the P5 variants by their own name (P5 gentle, P5 replica)."""
    variants = ("P5_gentle", "P5_gentle_read", "P5_gentle_cost", "P5_gentle_same_server", "P5_replica", "P9_first")
    return t.key.replace("_", " ") if t.key in variants else t.key.split("_")[0]


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Every P number, flat; None where it could not be measured."""
    scales = [str(s) for s in results["scales_measured"]]
    small, large = scales[0], scales[-1]
    engine, p1 = results["engine"], results.get("P1") or {}
    p5, p6, p7, p8, p9, p10, p11 = (results.get(k) or {} for k in ("P5", "P6", "P7", "P8", "P9", "P10", "P11"))

    def p1_ratio(scale: str, strategy: str) -> float | None:
        return ((p1.get(scale) or {}).get(strategy) or {}).get("ratio")

    small_overheads = [(p1.get(small) or {}).get(s, {}).get("overhead_seconds") for s in ("template", "dump")]
    return {
        "P1_large": [p1_ratio(large, "template"), p1_ratio(large, "dump")],
        "P1_small_overhead_s": [x for x in small_overheads if x is not None] or None,
        "P2": engine[large]["P2_clone_vs_cp"],
        "P3": engine[large]["P3_dump_speedup_vs_best_manual"],
        "P4": results.get("P4_system_large_vs_small"),
        "P5": p5.get("P5_tps_ratio"),
        "P5_terminated": p5.get("sessions_terminated"),
        "P5_gentle": (p5.get("gentle") or {}).get("P5_gentle_tps_ratio"),
        "P5_gentle_read": (p5.get("gentle") or {}).get("P5_gentle_read_tps_ratio"),
        "P5_gentle_cost": (p5.get("gentle") or {}).get("copy_time_ratio"),
        "P5_gentle_same_server": (p5.get("gentle_same_server") or {}).get("P5_gentle_same_server_tps_ratio"),
        "P5_replica": (p5.get("replica") or {}).get("P5_replica_tps_ratio"),
        "P6": p6.get("P6_concurrent_vs_one"),
        "P7_rss_mb": p7.get("P7_peak_rss_mb"),
        "P7_writes": p7.get("P7_idle_api_writes"),
        "P8": p8.get("P8_reflink_clone_seconds"),
        "P9": p9.get("P9_seconds"),
        "P9_first": [row["first_branch_seconds"] for row in p9.values() if isinstance(row, dict)] or None,
        "P9_ratio": p9.get("P9_large_vs_small"),
        "P10": p10.get("P10_cutoff_seconds"),
        "P11": p11.get("P11_masked_vs_unmasked"),
    }


def _met(t: Target, value: Any) -> bool | None:
    values = value if isinstance(value, list) else [value]
    if not values or any(v is None for v in values):
        return None
    if t.key in ("P5_terminated", "P7_writes"):
        return all(v == 0 for v in values)
    if t.key in INFORMATIVE:  # measured prices and settings beside the target row, no targets of their own
        return None
    if t.key == "P8":
        return all(v < t.bound for v in values)
    return all(v >= t.bound if t.higher_is_better else v <= t.bound for v in values)


def table(results: dict[str, Any]) -> str:
    s = summary(results)
    scales = results["scales_measured"]
    sizes = ", ".join(f"scale {k}: {v['bytes'] / 1e6:.0f} MB" for k, v in results["engine"].items())
    lines = [f"pgbench {sizes}; median of {results['repeat']} runs; same server, same run "
             f"(PostgreSQL {results['postgres']} with production durability: fsync, full_page_writes and "
             f"synchronous_commit on; {results['cpus']} CPUs shared with other work). "
             f"Small = scale {scales[0]}, large = scale {scales[-1]}. Raw numbers: `bench/results.json`.", "",
             "| | measure | result | target | met |", "|---|---|---|---|---|"]
    for t in TARGETS:
        value = s[t.key]
        shown = ("; ".join("n/a" if v is None else str(v) for v in value) if isinstance(value, list)
                 else "n/a" if value is None else str(value))
        met = _met(t, value)
        gentle = (results.get("P5") or {}).get("gentle") or {}
        what = t.what.format(branches=(results.get("P6") or {}).get("branches", "?"),
                             environments=(results.get("P7") or {}).get("environments", "?"),
                             gentle=f"maxRate {gentle.get('max_rate', '?')}, streams {gentle.get('streams', '?')}",
                             held=f"{gentle.get('snapshot_seconds', '?')} s of {gentle.get('dump_seconds', '?')} s",
                             snapshots=_snapshot_sizes(results),
                             refreshed=_size((results.get("P10") or {}).get("bytes")))
        lines.append(f"| {label(t)} | {what} | {shown} | {t.target} | "
                     f"{'n/a' if met is None else 'yes' if met else '**no**'} |")
    notes = results.get("notes") or []
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    lines += ["", "![clone times](docs/bench-clone-times.png) ![ratios](docs/bench-ratios.png)"]
    return "\n".join(lines)


def _size(n: Any) -> str:
    return f"{n / 1e9:.1f} GB" if isinstance(n, int | float) else "?"


def _snapshot_sizes(results: dict[str, Any]) -> str:
    rows = [row for row in (results.get("P9") or {}).values() if isinstance(row, dict)]
    return "; ".join(_size(row.get("bytes")) for row in rows) or "?"


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    text = readme.read_text()
    block = f"{START}\n{table(results)}\n{END}"
    if START in text:  # the README's Performance section holds the markers
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        readme.write_text(text)


def plot(results: dict[str, Any], docs: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    written = []
    methods = [("template_file_copy", "Template FILE_COPY"), ("template_wal_log", "Template WAL_LOG"),
               ("cp_r", "cp -r"), ("dump_full", "envbranch Dump"), ("pg_dump_psql", "pg_dump | psql"),
               ("pg_dump_restore_j2", "pg_dump/restore -j2"), ("pgcopydb", "pgcopydb"),
               ("dump_system", "envbranch System")]
    engine = results["engine"]
    fig, axes = plt.subplots(1, len(engine), figsize=(6 * len(engine), 4), squeeze=False)
    for ax, (scale, row) in zip(axes[0], engine.items(), strict=True):
        shown = [(label, row[key]) for key, label in methods if row.get(key)]
        colors = ["tab:green" if "envbranch" in lbl or "Template" in lbl else "tab:gray" for lbl, _ in shown]
        ax.barh([lbl for lbl, _ in shown], [v for _, v in shown], color=colors)
        ax.invert_yaxis()
        ax.set_xlabel("seconds (median)")
        ax.set_title(f"pgbench scale {scale} ({row['bytes'] / 1e6:.0f} MB)")
    fig.tight_layout()
    written.append(docs / "bench-clone-times.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    s = summary(results)
    fig, ax = plt.subplots(figsize=(8, 4))
    ratios = [(t, s[t.key]) for t in TARGETS if t.key in ("P1_large", "P2", "P3", "P4", "P5", "P5_gentle",
                                                          "P5_replica", "P6", "P11")]
    labels, values, bounds = [], [], []
    for t, value in ratios:
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if v is not None:
                labels.append(label(t) + ([" template", " dump"][i] if isinstance(value, list) else ""))
                values.append(v)
                bounds.append(t.bound)
    met = [v >= b if lbl.startswith(("P2", "P3", "P5", "P11")) else v <= b for lbl, v, b in zip(labels, values, bounds,
                                                                                     strict=True)]
    ax.bar(labels, values, color=["tab:green" if m else "tab:red" for m in met])
    ax.scatter(labels, bounds, marker="_", s=600, color="black", label="target", zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("ratio (log scale)")
    ax.set_title("envbranch ratios (green: target met)")
    ax.legend()
    fig.tight_layout()
    written.append(docs / "bench-ratios.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)
    return written
