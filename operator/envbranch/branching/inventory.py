"""status.inventory: what an environment created, written before each thing is created, so a
rollback or a deletion after a crash at any line knows what to remove."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envbranch.api.environment import EnvironmentStatus, InventoryEntry


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

    @staticmethod
    def of(item: InventoryEntry) -> Entry:
        return Entry(kind=item.kind, name=item.name, namespace=item.namespace, server=item.server)

    def model(self) -> InventoryEntry:
        return InventoryEntry(kind=self.kind, name=self.name, namespace=self.namespace, server=self.server)

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else f" on {self.server}" if self.server else ""
        return f"{self.kind} {self.name}{where}"


def entries(status: EnvironmentStatus) -> list[Entry]:
    return [Entry.of(item) for item in status.inventory or []]


def with_entry(status: EnvironmentStatus, entry: Entry) -> list[InventoryEntry] | None:
    """The inventory list with `entry` added, or None when it is already there."""
    current = entries(status)
    if entry in current:
        return None
    return [e.model() for e in [*current, entry]]


def without_entry(status: EnvironmentStatus, entry: Entry) -> list[InventoryEntry]:
    return [e.model() for e in entries(status) if e != entry]
