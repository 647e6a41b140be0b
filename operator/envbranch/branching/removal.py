"""Rollback and deletion: the inventory removed in reverse, each entry by the undo its step declared,
verified gone, and dropped from the inventory once it is."""

from __future__ import annotations

from envbranch.branching import errors
from envbranch.branching.errors import Transient
from envbranch.branching.inventory import Entry, entries, without_entry
from envbranch.branching.run import Run
from envbranch.branching.steps import UNDO


def removal_order(items: list[Entry]) -> list[Entry]:
    """Newest first, except that roles go last: a role cannot be dropped while it owns a database."""
    newest_first = list(reversed(items))
    return [e for e in newest_first if e.kind != "Role"] + [e for e in newest_first if e.kind == "Role"]


def remove_inventory(run: Run, purpose: str) -> None:
    """Remove what the inventory lists, verifying each is gone, dropping each entry once it is. Any
    failure is retried with backoff (Transient): a rollback or a deletion must finish."""
    try:
        for entry in removal_order(entries(run.status)):
            undo = UNDO.get(entry.kind)
            if undo is not None:
                undo(run, entry)
            run.write(inventory=without_entry(run.status, entry))
    except Transient:
        raise
    except Exception as exc:
        raise Transient(purpose, "CleanupIncomplete", f"{purpose}: {errors.describe(exc)}") from exc
