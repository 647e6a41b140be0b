"""What happened to one Environment, in order: every version of it and every Namespace, ConfigMap
and Secret labelled as its own, as watches see them. Kubernetes objects share one resourceVersion
sequence (the etcd revision of the one etcd a test cluster has), so "the inventory listed X before X
was created" and "X was gone before the inventory dropped it" are comparisons of resourceVersions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from envbranch.api.common import GROUP, VERSION
from envbranch.branching.config_copy import ENVIRONMENT_LABEL
from envbranch.branching.inventory import Entry
from envbranch_testing.processes import wait_until
from envbranch_testing.watches import Watches


@dataclass(frozen=True)
class Change:
    type: str       # ADDED, MODIFIED, DELETED
    entry: Entry    # the object, as an inventory entry names it
    rv: int


class History(Watches):
    def __init__(self, api: client.ApiClient, project: str, name: str) -> None:
        self.project, self.name = project, name
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        selector = f"{ENVIRONMENT_LABEL}={name}"
        self.versions: list[dict[str, Any]] = []
        self.changes: list[Change] = []
        lists: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
            (custom.list_namespaced_custom_object, (GROUP, VERSION, project, "environments"),
             {"field_selector": f"metadata.name={name}"}),
            (core.list_namespace, (), {"label_selector": selector}),
            (core.list_config_map_for_all_namespaces, (), {"label_selector": selector}),
            (core.list_secret_for_all_namespaces, (), {"label_selector": selector}),
        ]
        # Each watch starts from now: nothing made after the constructor returns is missed.
        super().__init__([(fn, args, kwargs, self._list_rv(fn, args, kwargs)) for fn, args, kwargs in lists])

    @staticmethod
    def _list_rv(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        listed = fn(*args, **kwargs)
        return str(listed["metadata"]["resourceVersion"] if isinstance(listed, dict)
                   else listed.metadata.resource_version)

    def on_event(self, event: dict[str, Any]) -> str:
        obj = event["object"]
        if isinstance(obj, dict):
            self.versions.append(obj)
            return str(obj["metadata"]["resourceVersion"])
        kind = type(obj).__name__.removeprefix("V1")
        entry = Entry(kind, obj.metadata.name) if kind == "Namespace" else \
            Entry(kind, obj.metadata.name, namespace=obj.metadata.namespace)
        self.changes.append(Change(event["type"], entry, int(obj.metadata.resource_version)))
        return str(obj.metadata.resource_version)

    # -- what the history shows --------------------------------------------------------------------
    def inventories(self) -> Iterator[tuple[int, list[Entry]]]:
        """(resourceVersion, inventory) of each stored version of the Environment, oldest first."""
        for v in self.versions:
            inventory = (v.get("status") or {}).get("inventory") or []
            yield int(v["metadata"]["resourceVersion"]), [Entry.from_dict(d) for d in inventory]

    def largest_inventory(self) -> list[Entry]:
        return max((inv for _, inv in self.inventories()), key=len, default=[])

    def first_listed(self, entry: Entry) -> int | None:
        return next((rv for rv, inv in self.inventories() if entry in inv), None)

    def dropped(self) -> list[tuple[int, Entry]]:
        """(resourceVersion of the Environment version that no longer lists it, entry), in order."""
        out: list[tuple[int, Entry]] = []
        previous: list[Entry] = []
        for rv, inv in self.inventories():
            out += [(rv, e) for e in previous if e not in inv]
            previous = inv
        return out

    def assert_recorded_before_created(self) -> list[Entry]:
        """Every object of this Environment was listed in its inventory before it was created.
        Returns the objects created."""
        # Separate watches deliver in their own time: the order of creation is the resourceVersions'.
        created = sorted((c for c in self.changes if c.type == "ADDED"), key=lambda c: c.rv)
        for change in created:
            listed = self.first_listed(change.entry)
            assert listed is not None, f"{change.entry.describe()} was created but never in the inventory"
            assert listed < change.rv, f"{change.entry.describe()} was created (rv {change.rv}) before the " \
                                       f"inventory listed it (rv {listed})"
        return [c.entry for c in created]

    def assert_rolled_back_in_reverse(self) -> None:
        """The whole largest inventory was removed newest first (roles last, as a role cannot go while
        it owns a database), and each Kubernetes object was gone before its entry was dropped."""
        largest = self.largest_inventory()
        assert largest, "nothing was ever in the inventory: the rollback had nothing to prove"
        removed = [e for _, e in self.dropped()]
        newest_first = list(reversed(largest))
        expected = [e for e in newest_first if e.kind != "Role"] + [e for e in newest_first if e.kind == "Role"]
        assert removed == expected, f"removed in the order {removed}, not newest first from {largest}"
        for rv, entry in self.dropped():
            if any(c.type == "ADDED" and c.entry == entry for c in self.changes):
                # Deleted for good (a namespace: finalized, not only marked) before the entry went.
                gone = [c.rv for c in self.changes if c.type == "DELETED" and c.entry == entry]
                assert gone and gone[0] < rv, f"{entry.describe()} dropped from the inventory (rv {rv}) " \
                                              f"before it was gone (deleted at {gone or 'never'})"

    def wait(self, check: Callable[[History], bool], what: str, timeout: float = 30) -> None:
        """Until the watches have delivered what `check` looks for (they lag the API by a moment)."""
        def seen() -> bool:
            with self._lock:
                return check(self)

        wait_until(seen, timeout=timeout, what=what)

    def settled(self, phase_and_condition: tuple[str, str]) -> bool:
        """The last version seen has this phase and this condition True."""
        if not self.versions:
            return False
        status = self.versions[-1].get("status") or {}
        phase, condition = phase_and_condition
        return status.get("phase") == phase and any(
            c["type"] == condition and c["status"] == "True" for c in status.get("conditions") or [])

    def all_deleted(self) -> bool:
        """Every object seen created was also seen deleted."""
        added = {c.entry for c in self.changes if c.type == "ADDED"}
        return added <= {c.entry for c in self.changes if c.type == "DELETED"}
