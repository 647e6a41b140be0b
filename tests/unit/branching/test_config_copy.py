"""The copy of a ConfigMap/Secret: GitOps tracking dropped, new provider ids, rotated keys."""

from __future__ import annotations

import base64

from envbranch.branching.config_copy import copy_body, rotate_keys_of

SOURCE = {
    "metadata": {
        "name": "webhooks", "namespace": "shop-prod", "uid": "u-1", "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{"manager": "kubectl"}],
        "ownerReferences": [{"kind": "Application", "name": "shop"}],
        "labels": {"envbranch.io/category": "gateway-routes", "app.kubernetes.io/instance": "shop-prod",
                   "argocd.argoproj.io/instance": "shop", "team": "payments"},
        "annotations": {"envbranch.io/rotate-keys": "signing-secret, missing",
                        "argocd.argoproj.io/tracking-id": "shop:/Secret:shop-prod/webhooks",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}", "owner": "payments"},
    },
    "type": "Opaque",
    "data": {"url": base64.b64encode(b"https://x").decode(), "signing-secret": base64.b64encode(b"s3cret").decode()},
}
STAGING = {"envbranch.io/environment": "staging", "envbranch.io/uid": "u-staging"}


def test_secret_copy_drops_server_and_gitops_metadata() -> None:
    body, _ = copy_body("Secret", SOURCE, STAGING, "gateway-routes", new_value=lambda: "bmV3")
    meta = body["metadata"]
    assert set(meta) == {"name", "labels", "annotations"}
    assert meta["labels"] == {"envbranch.io/category": "gateway-routes", "team": "payments",
                              "envbranch.io/environment": "staging", "envbranch.io/uid": "u-staging"}
    assert meta["annotations"] == {"envbranch.io/rotate-keys": "signing-secret, missing", "owner": "payments",
                                   "envbranch.io/copied-from": "shop-prod/webhooks"}
    assert body["type"] == "Opaque"


def test_rotated_keys_get_fresh_values_and_others_are_kept() -> None:
    body, rotated = copy_body("Secret", SOURCE, STAGING, "gateway-routes")
    assert rotated == ["signing-secret"]
    assert body["data"]["url"] == SOURCE["data"]["url"]
    fresh = base64.b64decode(body["data"]["signing-secret"])
    assert fresh != b"s3cret" and len(fresh) >= 40
    again, _ = copy_body("Secret", SOURCE, STAGING, "gateway-routes")
    assert again["data"]["signing-secret"] != body["data"]["signing-secret"]


def test_rotate_keys_only_names_keys_the_secret_has() -> None:
    assert rotate_keys_of(SOURCE) == ["signing-secret"]
    assert rotate_keys_of({"metadata": {}, "data": {"a": "x"}}) == []


def test_file_provider_copy_gets_a_new_id_and_remembers_the_old() -> None:
    source = {"metadata": {"name": "uploads", "namespace": "shop-prod",
                           "labels": {"envbranch.io/category": "file-providers",
                                      "envbranch.io/provider-id": "11111111-1111-4111-8111-111111111111"}},
              "data": {"bucket": "b"}}
    first, rotated = copy_body("ConfigMap", source, STAGING, "file-providers")
    second, _ = copy_body("ConfigMap", source, STAGING, "file-providers")
    labels = first["metadata"]["labels"]
    assert rotated == []
    assert labels["envbranch.io/copied-from-id"] == "11111111-1111-4111-8111-111111111111"
    assert labels["envbranch.io/provider-id"] not in ("11111111-1111-4111-8111-111111111111",
                                                      second["metadata"]["labels"]["envbranch.io/provider-id"])
    assert first["data"] == {"bucket": "b"}
