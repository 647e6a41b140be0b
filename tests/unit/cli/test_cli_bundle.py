"""The ConfigurationBundle of `envbranch export`/`import`: export shape, validation, the import plan."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from envbranch.cli.bundle import REDACTED, BundleError, export_bundle, parse_bundle, plan_import, redaction_note


def _b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def _meta(name: str, category: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "shop-prod", "uid": "u-1", "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{"manager": "kubectl"}],
            "labels": {"envbranch.io/category": category, "app.kubernetes.io/instance": "shop-prod",
                       **extra.pop("labels", {})},
            "annotations": {"argocd.argoproj.io/tracking-id": "shop:x", **extra.pop("annotations", {})}}


PROD: list[tuple[Any, dict[str, Any]]] = [
    ("ConfigMap", {"metadata": _meta("uploads", "file-providers",
                                     labels={"envbranch.io/provider-id": "11111111-1111-4111-8111-111111111111"}),
                   "data": {"bucket": "shop-uploads"}}),
    ("ConfigMap", {"metadata": _meta("app-env", "environment-variables"), "data": {"LOG_LEVEL": "info"}}),
    ("Secret", {"metadata": _meta("webhooks", "gateway-routes",
                                  annotations={"envbranch.io/rotate-keys": "signing-secret"}),
                "type": "Opaque", "data": {"url": _b64("https://hooks"), "signing-secret": _b64("prod-signing")}}),
    ("Secret", {"metadata": _meta("google-login", "auth-providers"), "data": {"client-secret": _b64("g")}}),
]


def _bundle() -> dict[str, Any]:
    return export_bundle(PROD, project="shop", environment="production", namespace="shop-prod").dump()


def test_export_strips_server_metadata_and_redacts_every_secret_value() -> None:
    data = _bundle()
    assert data["apiVersion"] == "envbranch.io/v1alpha1" and data["kind"] == "ConfigurationBundle"
    assert data["metadata"]["environment"] == "production" and data["metadata"]["namespace"] == "shop-prod"
    items = {i["metadata"]["name"]: i for i in data["items"]}
    assert set(items) == {"uploads", "app-env", "webhooks"}  # never auth providers
    assert items["webhooks"]["data"] == {"url": REDACTED, "signing-secret": REDACTED}
    assert items["webhooks"]["metadata"] == {"name": "webhooks", "labels": {"envbranch.io/category": "gateway-routes"},
                                             "annotations": {"envbranch.io/rotate-keys": "signing-secret"}}
    assert items["uploads"]["metadata"] == {"name": "uploads", "labels": {"envbranch.io/category": "file-providers"}}
    text = yaml.safe_dump(data)
    assert "prod-signing" not in text and _b64("prod-signing") not in text and "resourceVersion" not in text
    assert "webhooks (signing-secret, url)" in redaction_note(export_bundle(PROD, project="s", environment="p",
                                                                            namespace="n"))
    # What export writes, import reads back unchanged.
    assert parse_bundle(yaml.safe_load(text)).dump() == data
    assert parse_bundle(json.loads(json.dumps(data))).dump() == data


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.update(kind="Environment"), "kind"),
    (lambda b: b["items"][0]["metadata"]["labels"].update({"envbranch.io/category": "auth-providers"}),
     "never exported or imported"),
    (lambda b: b["items"][0]["metadata"]["labels"].pop("envbranch.io/category"), "must be one of"),
    (lambda b: b["items"].append(dict(b["items"][0])), "appears twice"),
    (lambda b: b["items"][-1]["data"].update(url="not base64!"), "not base64"),
    (lambda b: b["items"][0]["data"].update(bucket=REDACTED), "only for Secret values"),
    (lambda b: b["items"][0]["metadata"].update(name="Not_A_Name"), "metadata.name"),
    (lambda b: b["items"][0].update(spec={}), "spec"),
])
def test_invalid_bundles_are_refused_with_a_reason(mutate: Any, message: str) -> None:
    data = _bundle()
    data["items"].sort(key=lambda i: i["kind"])  # ConfigMaps first, the Secret last
    mutate(data)
    with pytest.raises(BundleError, match="invalid bundle") as exc:
        parse_bundle(data)
    assert message in str(exc.value)


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(BundleError, match="not a mapping"):
        parse_bundle(["a", "list"])


def _target(**secret_data: str) -> list[tuple[Any, dict[str, Any]]]:
    """A branch namespace: a copied uploads (own provider id), an extra route, credentials, an auth provider."""
    def meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "namespace": "shop-x", "resourceVersion": "3", "labels": labels, "annotations": {}}

    return [
        ("ConfigMap", {"metadata": meta("uploads", {"envbranch.io/category": "file-providers",
                                                    "envbranch.io/environment": "x",
                                                    "envbranch.io/provider-id": "own-id"}),
                       "data": {"bucket": "branch-uploads"}}),
        ("ConfigMap", {"metadata": meta("routes", {"envbranch.io/category": "gateway-routes"}), "data": {"a": "b"}}),
        ("Secret", {"metadata": meta("webhooks", {"envbranch.io/category": "gateway-routes"}), "type": "Opaque",
                    "data": secret_data}),
        ("Secret", {"metadata": meta("x-db", {"envbranch.io/environment": "x"}), "data": {"password": _b64("p")}}),
        ("Secret", {"metadata": meta("google-login", {"envbranch.io/category": "auth-providers"}), "data": {}}),
    ]


def test_plan_creates_updates_deletes_and_keeps_redacted_values_of_the_target() -> None:
    bundle = parse_bundle(_bundle())
    current = _target(url=_b64("https://branch-hooks"), **{"signing-secret": _b64("branch-signing")})
    plan = {(c.kind, c.name): c for c in plan_import(bundle, current, "x")}
    assert {k: c.action for k, c in plan.items()} == {
        ("ConfigMap", "uploads"): "update", ("ConfigMap", "app-env"): "create",
        ("Secret", "webhooks"): "update", ("ConfigMap", "routes"): "delete"}
    # Never the credentials or the auth provider; redacted keys keep the target's values.
    webhooks = plan[("Secret", "webhooks")]
    assert webhooks.body["data"] == {"url": _b64("https://branch-hooks"), "signing-secret": _b64("branch-signing")}
    assert webhooks.keys == {} and webhooks.metadata  # only the rotate annotation and environment label
    assert webhooks.resource_version == "3" and not webhooks.recreate
    uploads = plan[("ConfigMap", "uploads")]
    assert uploads.keys == {"changed": ["bucket"]} and not uploads.metadata
    assert uploads.body["metadata"]["labels"]["envbranch.io/provider-id"] == "own-id"  # the target's own id
    assert plan[("ConfigMap", "app-env")].keys == {"added": ["LOG_LEVEL"]}
    summaries = json.dumps([c.summary() for c in plan.values()])
    assert "branch-signing" not in summaries and _b64("branch-signing") not in summaries


def test_plan_of_an_identical_configuration_changes_nothing() -> None:
    bundle = parse_bundle(_bundle())
    first = plan_import(bundle, _target(url=_b64("u"), **{"signing-secret": _b64("s")}), "x")
    after = [(c.kind, {"metadata": {**c.body["metadata"], "namespace": "shop-x"},
                       **{k: v for k, v in c.body.items() if k != "metadata"}})
             for c in first if c.action in ("create", "update")]
    assert {c.action for c in plan_import(bundle, after, "x")} == {"unchanged"}  # type: ignore[arg-type]


def test_plan_refuses_a_redacted_key_the_target_lacks_and_overwriting_other_objects() -> None:
    bundle = parse_bundle(_bundle())
    with pytest.raises(BundleError, match=r"Secret webhooks: key\(s\) \['signing-secret'\] are <redacted>"):
        plan_import(bundle, _target(url=_b64("u")), "x")
    data = _bundle()
    data["items"].append({"kind": "Secret", "metadata": {"name": "google-login", "labels": {
        "envbranch.io/category": "oauth-clients"}}, "data": {"k": _b64("v")}})
    with pytest.raises(BundleError, match="not copyable configuration"):
        plan_import(parse_bundle(data), _target(url=_b64("u"), **{"signing-secret": _b64("s")}), "x")
