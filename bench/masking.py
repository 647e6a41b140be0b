"""P11: a masked Dump's throughput over the unmasked Dump's, same pgbench data, same run. The policy
masks the large tables' text columns (the fillers) with the keyed hash, the costliest function: two
SHA-256 per value, inside the source's read."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from bench.common import Bench, median_time, ratio
from bench.engine import DST, source_name
from envbranch import postgres as engine
from envbranch.postgres.masking import ColumnMask, Masking

MASKED_COLUMNS = (("pgbench_accounts", "filler"), ("pgbench_history", "filler"), ("pgbench_tellers", "filler"),
                  ("pgbench_branches", "filler"))


def policy() -> Masking:
    return Masking("bench", secrets.token_bytes(32),
                   {("public", table, column): ColumnMask("Hash") for table, column in MASKED_COLUMNS})


def masked_dump(b: Bench, scale: int) -> dict[str, Any]:
    """Median seconds of the unmasked and the masked Full Dump of pgbench at `scale`, alternating."""
    src = source_name(scale)
    masking = policy()

    def clone(with_masking: Masking | None) -> object:
        return engine.clone_database(b.admin, src, b.admin, DST, mode="Full", strategy="Dump",
                                     uid=str(uuid.uuid4()), masking=with_masking)

    def drop() -> None:
        b.drop(DST)
        b.checkpoint()

    plain = masked = 0.0
    for _ in range(b.settings.repeat):  # side by side: each round runs both, so load drifts hit both
        plain += median_time(lambda: clone(None), drop, 1)
        masked += median_time(lambda: clone(masking), drop, 1)
    plain, masked = round(plain / b.settings.repeat, 3), round(masked / b.settings.repeat, 3)
    return {"scale": scale, "bytes": b.sizes[scale], "dump_full": plain, "dump_masked": masked,
            "masked_columns": len(MASKED_COLUMNS), "P11_masked_vs_unmasked": ratio(plain, masked)}
