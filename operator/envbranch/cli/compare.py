"""`envbranch diff`: what differs between two environments, as plain data (pure; no I/O here).

Configuration is compared by category (label envbranch.io/category) on data, binaryData and type;
labels and annotations are not compared (provider ids and copied-from differ by design). Secret
values never leave this module: for a Secret only key names are reported.
"""

from __future__ import annotations

import difflib
from typing import Any

from envbranch.branching.config_copy import CATEGORY_LABEL
from envbranch.cli.bundle import key_changes
from envbranch.kube.configuration import Kind

ONLY_IN_A, ONLY_IN_B, DIFFERS, SAME = "only-in-a", "only-in-b", "differs", "same"


def schema_diff(a_schema: str, b_schema: str, a_label: str, b_label: str, context: int = 3) -> str:
    """A unified diff of two normalised schema dumps; empty when they are equal."""
    return "".join(difflib.unified_diff(a_schema.splitlines(keepends=True), b_schema.splitlines(keepends=True),
                                        fromfile=a_label, tofile=b_label, n=context))


def _index(objects: list[tuple[Kind, dict[str, Any]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind, obj in objects:
        category = (obj["metadata"].get("labels") or {}).get(CATEGORY_LABEL)
        if category:
            out[(category, kind, obj["metadata"]["name"])] = obj
    return out


def _data(obj: dict[str, Any]) -> dict[str, str]:
    return {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}


def config_diff(a: list[tuple[Kind, dict[str, Any]]],
                b: list[tuple[Kind, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Per category, one entry per ConfigMap/Secret: state only-in-a / only-in-b / differs / same;
    for `differs` the key names added, removed and changed (from A to B); for ConfigMaps also the
    changed values. Secret values are never included."""
    ia, ib = _index(a), _index(b)
    result: dict[str, list[dict[str, Any]]] = {}
    for key in sorted(set(ia) | set(ib)):
        category, kind, name = key
        entry: dict[str, Any] = {"kind": kind, "name": name}
        if key not in ib:
            entry["state"] = ONLY_IN_A
        elif key not in ia:
            entry["state"] = ONLY_IN_B
        else:
            da, db = _data(ia[key]), _data(ib[key])
            keys = key_changes(da, db)
            type_differs = ia[key].get("type") != ib[key].get("type")
            entry["state"] = DIFFERS if keys or type_differs else SAME
            if keys:
                entry["keys"] = keys
            if type_differs:
                entry["type"] = {"a": ia[key].get("type"), "b": ib[key].get("type")}
            if kind == "ConfigMap" and keys.get("changed"):
                entry["values"] = {k: {"a": da[k], "b": db[k]} for k in keys["changed"]}
        result.setdefault(category, []).append(entry)
    return result


def config_differs(diff: dict[str, list[dict[str, Any]]]) -> bool:
    return any(e["state"] != SAME for entries in diff.values() for e in entries)
