"""The configuration bundle of `envbranch export` / `envbranch import`, and the plan of an import.

A bundle is one YAML document:

    apiVersion: envbranch.io/v1alpha1
    kind: ConfigurationBundle
    metadata: {project: shop, environment: production, namespace: shop-prod, exportedAt: "..."}
    items:                       # ConfigMaps and Secrets of the copyable categories
    - apiVersion: v1
      kind: Secret
      metadata: {name: webhooks, labels: {envbranch.io/category: gateway-routes}, annotations: {}}
      type: Opaque
      data: {url: <redacted>, signing-secret: <redacted>}

Secret values are never exported: each reads `<redacted>` (which is not base64, so the bundle can
never be applied by accident). On import a redacted key keeps the target's current value; replace
the marker with a base64 value to set one. Everything here is pure: the commands do the I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from envbranch.branching.config_copy import (
    CATEGORY_FLAGS,
    CATEGORY_LABEL,
    ENVIRONMENT_LABEL,
    NEVER_COPIED,
    PROVIDER_ID,
    portable_body,
)
from envbranch.kube.configuration import Kind

REDACTED = "<redacted>"
COPYABLE = tuple(CATEGORY_FLAGS)  # file-providers, gateway-routes, security-config, oauth-clients, env vars
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY = r"[-._a-zA-Z0-9]+"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class BundleError(ValueError):
    """A bundle that cannot be imported; the message says why (never a secret value)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ItemMeta(_Strict):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _copyable_category(cls, labels: dict[str, str]) -> dict[str, str]:
        category = labels.get(CATEGORY_LABEL)
        if category == NEVER_COPIED:
            raise ValueError(f"category {NEVER_COPIED} is never exported or imported")
        if category not in COPYABLE:
            raise ValueError(f"label {CATEGORY_LABEL} must be one of {', '.join(COPYABLE)} (got {category!r})")
        return labels


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


class BundleItem(_Strict):
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    kind: Literal["ConfigMap", "Secret"]
    metadata: ItemMeta
    type: str | None = None
    immutable: bool | None = None
    data: dict[str, str] = Field(default_factory=dict)
    binary_data: dict[str, str] = Field(default_factory=dict, alias="binaryData")

    @property
    def category(self) -> str:
        return self.metadata.labels[CATEGORY_LABEL]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.metadata.name}"

    def redacted_keys(self) -> list[str]:
        return sorted(k for k, v in self.data.items() if self.kind == "Secret" and v == REDACTED)

    @model_validator(mode="after")
    def _shape(self) -> BundleItem:
        bad_keys = [k for k in [*self.data, *self.binary_data] if not re.fullmatch(DATA_KEY, k)]
        if bad_keys:
            raise ValueError(f"{self.ref}: invalid data key(s) {bad_keys}")
        if self.kind == "ConfigMap":
            if self.type is not None:
                raise ValueError(f"{self.ref}: a ConfigMap has no type")
            if any(v == REDACTED for v in self.data.values()):
                raise ValueError(f"{self.ref}: {REDACTED} is only for Secret values")
            overlap = set(self.data) & set(self.binary_data)
            if overlap:
                raise ValueError(f"{self.ref}: key(s) {sorted(overlap)} in both data and binaryData")
            encoded = self.binary_data
        else:
            if self.binary_data:
                raise ValueError(f"{self.ref}: a Secret has no binaryData (use data, base64-encoded)")
            encoded = {k: v for k, v in self.data.items() if v != REDACTED}
        not_b64 = sorted(k for k, v in encoded.items() if not _is_base64(v))
        if not_b64:
            raise ValueError(f"{self.ref}: value(s) of {not_b64} are not base64 (nor {REDACTED})")
        return self


class BundleSource(_Strict):
    """Where the bundle was exported from (informational)."""

    project: str | None = None
    environment: str | None = None
    namespace: str | None = None
    exported_at: str | None = Field(default=None, alias="exportedAt")


class ConfigurationBundle(_Strict):
    api_version: Literal["envbranch.io/v1alpha1"] = Field(default="envbranch.io/v1alpha1", alias="apiVersion")
    kind: Literal["ConfigurationBundle"] = "ConfigurationBundle"
    metadata: BundleSource = Field(default_factory=BundleSource)
    items: list[BundleItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ConfigurationBundle:
        seen: set[str] = set()
        for item in self.items:
            if item.ref in seen:
                raise ValueError(f"{item.ref} appears twice")
            seen.add(item.ref)
        return self

    def dump(self) -> dict[str, Any]:
        """Plain data for YAML/JSON, empty fields left out."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        for item in data["items"]:
            for key in ("data", "binaryData"):
                if not item.get(key):
                    item.pop(key, None)
            for key in ("labels", "annotations"):
                if not item["metadata"].get(key):
                    item["metadata"].pop(key, None)
        return data


def parse_bundle(document: Any) -> ConfigurationBundle:
    """Validate a loaded YAML/JSON document; BundleError with one readable line per problem."""
    if not isinstance(document, dict):
        raise BundleError("not a ConfigurationBundle: the document is not a mapping")
    try:
        return ConfigurationBundle.model_validate(document)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            msg = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise BundleError("invalid bundle: " + "; ".join(problems)) from None


# -- export ------------------------------------------------------------------------------------------
def export_bundle(objects: list[tuple[Kind, dict[str, Any]]], *, project: str, environment: str,
                  namespace: str) -> ConfigurationBundle:
    """The bundle of an environment's copyable configuration, Secret values replaced by REDACTED."""
    items = []
    for kind, obj in objects:
        if (obj["metadata"].get("labels") or {}).get(CATEGORY_LABEL) not in COPYABLE:
            continue
        body = portable_body(obj)
        if kind == "Secret":
            body["data"] = dict.fromkeys(body.get("data") or {}, REDACTED)
        items.append(BundleItem.model_validate({"apiVersion": "v1", "kind": kind, **body}))
    items.sort(key=lambda i: (i.category, i.kind, i.metadata.name))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return ConfigurationBundle(metadata=BundleSource(project=project, environment=environment, namespace=namespace,
                                                     exported_at=now), items=items)


def redaction_note(bundle: ConfigurationBundle) -> str:
    """YAML comment lines naming the Secret keys whose values were left out."""
    lines = [f"# envbranch configuration bundle; Secret values are not exported and read {REDACTED}.",
             "# On import a redacted key keeps the target's current value (or put a base64 value here)."]
    redacted = [f"{i.metadata.name} ({', '.join(i.redacted_keys())})" for i in bundle.items if i.redacted_keys()]
    if redacted:
        lines.append(f"# Redacted Secret keys: {'; '.join(redacted)}")
    return "\n".join(lines) + "\n"


# -- import ------------------------------------------------------------------------------------------
Action = Literal["create", "update", "delete", "unchanged"]


@dataclass
class Change:
    action: Action
    kind: Kind
    name: str
    category: str
    keys: dict[str, list[str]] = field(default_factory=dict)  # added / removed / changed: names only
    metadata: bool = False                                    # labels, annotations or type differ
    body: dict[str, Any] = field(default_factory=dict, repr=False)   # what to write; never printed
    recreate: bool = False                                    # type or immutability: delete, then create
    resource_version: str | None = None

    def summary(self) -> dict[str, Any]:
        """What the user sees: no values, Secret or not."""
        out: dict[str, Any] = {"action": self.action, "kind": self.kind, "name": self.name,
                               "category": self.category}
        if self.keys:
            out["keys"] = self.keys
        if self.metadata:
            out["metadata"] = True
        return out


def _category(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(CATEGORY_LABEL)


def key_changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """Names of the keys added, removed and changed between two data maps (values never returned)."""
    changes = {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
               "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k])}
    return {k: v for k, v in changes.items() if v}


def _all_data(obj: dict[str, Any]) -> dict[str, str]:
    return {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}


def _desired(item: BundleItem, existing: dict[str, Any] | None, environment: str) -> dict[str, Any]:
    """The object to write: the bundle's labels and annotations over the target's own bookkeeping
    (GitOps tracking, provider id, copied-from), which stays as it is."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if existing is not None:
        kept = portable_body(existing)["metadata"]
        meta = existing["metadata"]
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in kept["labels"]}
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in kept["annotations"]}
        annotations.pop(LAST_APPLIED, None)
    labels.update(item.metadata.labels)
    annotations.update(item.metadata.annotations)
    labels[ENVIRONMENT_LABEL] = environment
    if item.category == "file-providers" and PROVIDER_ID not in labels:
        labels[PROVIDER_ID] = str(uuid.uuid4())
    body: dict[str, Any] = {"metadata": {"name": item.metadata.name, "labels": labels, "annotations": annotations}}
    data = dict(item.data)
    if item.kind == "Secret":
        current = (existing or {}).get("data") or {}
        missing = [k for k in item.redacted_keys() if k not in current]
        if missing:
            raise BundleError(f"Secret {item.metadata.name}: key(s) {missing} are {REDACTED} in the bundle and the "
                              "target has no value for them; put base64 values in the bundle")
        data.update({k: current[k] for k in item.redacted_keys()})
    if data:
        body["data"] = data
    if item.binary_data:
        body["binaryData"] = dict(item.binary_data)
    if item.type is not None:
        body["type"] = item.type
    elif item.kind == "Secret":
        body["type"] = (existing or {}).get("type") or "Opaque"
    if item.immutable is not None:
        body["immutable"] = item.immutable
    return body


def plan_import(bundle: ConfigurationBundle, current: list[tuple[Kind, dict[str, Any]]],
                environment: str) -> list[Change]:
    """What importing `bundle` into an environment whose namespace holds `current` (every ConfigMap
    and Secret there) does: create/update what the bundle has, delete copyable configuration it has
    not. BundleError when it would overwrite an object that is not copyable configuration or needs
    a redacted value the target does not have; every problem is found before anything changes."""
    existing = {(kind, obj["metadata"]["name"]): obj for kind, obj in current}
    changes: list[Change] = []
    problems: list[str] = []
    for item in bundle.items:
        old = existing.get((item.kind, item.metadata.name))
        if old is not None and _category(old) not in COPYABLE:
            problems.append(f"{item.ref} exists in the target and is not copyable configuration "
                            f"(category {_category(old)!r}); refusing to overwrite it")
            continue
        try:
            body = _desired(item, old, environment)
        except BundleError as exc:
            problems.append(str(exc))
            continue
        if old is None:
            changes.append(Change("create", item.kind, item.metadata.name, item.category,
                                  key_changes({}, _all_data(body)), body=body))
            continue
        keys = key_changes(_all_data(old), _all_data(body))
        old_meta = old["metadata"]
        old_annotations = {k: v for k, v in (old_meta.get("annotations") or {}).items() if k != LAST_APPLIED}
        meta_differs = ((old_meta.get("labels") or {}) != body["metadata"]["labels"]
                        or old_annotations != body["metadata"]["annotations"]
                        or old.get("type") != body.get("type")
                        or bool(old.get("immutable")) != bool(body.get("immutable")))
        if not keys and not meta_differs:
            changes.append(Change("unchanged", item.kind, item.metadata.name, item.category))
            continue
        recreate = bool(old.get("immutable")) or old.get("type") != body.get("type")
        changes.append(Change("update", item.kind, item.metadata.name, item.category, keys, meta_differs, body,
                              recreate, old_meta.get("resourceVersion")))
    if problems:
        raise BundleError("; ".join(problems))
    wanted = {(i.kind, i.metadata.name) for i in bundle.items}
    for (kind, name), obj in sorted(existing.items()):
        category = _category(obj)
        if category in COPYABLE and (kind, name) not in wanted:
            changes.append(Change("delete", kind, name, str(category)))
    order = {"delete": 0, "create": 1, "update": 2, "unchanged": 3}
    return sorted(changes, key=lambda c: (c.category, order[c.action], c.kind, c.name))
