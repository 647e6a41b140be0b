"""status.inventory: what an environment created, written before each thing is created, so a
rollback or a deletion after a crash at any line knows what to remove."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    namespace: str | None = None
    server: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"kind": self.kind, "name": self.name, "namespace": self.namespace,
                                  "server": self.server}.items() if v is not None}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Entry:
        return Entry(kind=str(d["kind"]), name=str(d["name"]), namespace=d.get("namespace"),
                     server=d.get("server"))

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else f" on {self.server}" if self.server else ""
        return f"{self.kind} {self.name}{where}"


def entries(status: dict[str, Any]) -> list[Entry]:
    return [Entry.from_dict(d) for d in status.get("inventory") or []]


def with_entry(status: dict[str, Any], entry: Entry) -> list[dict[str, Any]] | None:
    """The inventory list with `entry` added, or None when it is already there."""
    current = entries(status)
    if entry in current:
        return None
    return [e.as_dict() for e in [*current, entry]]
