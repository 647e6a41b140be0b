"""The generated CRDs are accepted by a real API server, and bad input is refused at apply time
with a message that says what is wrong."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.admission import BAD_SPECS, IMMUTABLE_BRANCH_CHANGES, create_environment, refusal
from envbranch_testing.crds import install_crds
from envbranch_testing.personal_schema import policy_spec


@pytest.fixture(scope="module")
def project(k8s: client.ApiClient) -> str:
    install_crds(k8s)
    name = f"crd-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _create(k8s: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return create_environment(client.CustomObjectsApi(k8s), ns, name, spec)


def _refusal(k8s: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> str:
    return refusal(client.CustomObjectsApi(k8s), ns, name, spec)


@pytest.mark.parametrize(("name", "spec", "message"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_refused_with_a_clear_message(k8s: client.ApiClient, project: str, name: str,
                                                  spec: dict[str, Any], message: str) -> None:
    assert message in _refusal(k8s, project, name, spec)


def test_bad_name_is_refused(k8s: client.ApiClient, project: str) -> None:
    assert "metadata.name must be a DNS label" in _refusal(k8s, project, "a" * 64, {})


def test_immutable_fields_cannot_change(k8s: client.ApiClient, project: str) -> None:
    _create(k8s, project, "immutable", {"source": "production", "mode": "System",
                                        "copy": {"environmentVariables": True}, "displayName": "Before"})
    api = client.CustomObjectsApi(k8s)
    args = (GROUP, VERSION, project, "environments", "immutable")
    for _, patch, message in IMMUTABLE_BRANCH_CHANGES:
        with pytest.raises(ApiException) as info:
            api.patch_namespaced_custom_object(*args, {"spec": patch})
        assert message in str(info.value.body)
    # displayName is the one field that may change (rename).
    api.patch_namespaced_custom_object(*args, {"spec": {"displayName": "After"}})
    assert api.get_namespaced_custom_object(*args)["spec"]["displayName"] == "After"


def test_unknown_copy_flag_is_refused_by_strict_validation(k8s: client.ApiClient, project: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment", "metadata": {"name": "unknown-flag"},
            "spec": {"source": "production", "mode": "Full", "copy": {"everything": True}}}
    with pytest.raises(ApiException) as info:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(
            GROUP, VERSION, project, "environments", body, field_validation="Strict")
    assert 'unknown field \\"spec.copy.everything\\"' in str(info.value.body)


def test_valid_root_and_branch_are_accepted(k8s: client.ApiClient, project: str) -> None:
    _create(k8s, project, "root", {"namespace": "root-ns", "database": {"serverRef": "main", "name": "shop"}})
    _create(k8s, project, "branch", {"source": "root", "mode": "Full", "ttl": "1h30m",
                                     "copy": {"fileProviders": True}, "database": {"strategy": "Dump"}})


@pytest.mark.parametrize(("ssl_mode", "accepted"), [(None, False), ("prefer", False), ("verify-full", True)])
def test_database_server_tls_needs_a_checking_ssl_mode(k8s: client.ApiClient, project: str, ssl_mode: str | None,
                                                       accepted: bool) -> None:
    spec: dict[str, Any] = {"host": "db.example.com", "adminSecretRef": {"name": "admin"}, "tls": {"name": "pg-ca"}}
    if ssl_mode:
        spec["sslMode"] = ssl_mode
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer",
            "metadata": {"name": f"tls-{ssl_mode or 'default'}"}, "spec": spec}
    api = client.CustomObjectsApi(k8s)
    if accepted:
        api.create_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", body)
        return
    with pytest.raises(ApiException) as info:
        api.create_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", body)
    assert "spec.tls needs sslMode verify-full" in str(info.value.body)


_RULE = {"table": "customers", "column": "email", "function": "Email"}
BAD_POLICIES: list[tuple[str, dict[str, Any], str]] = [
    ("no-key", {"rules": [_RULE]}, "keySecretRef"),
    ("unknown-function", {"rules": [{**_RULE, "function": "Scramble"}]}, "spec.rules[0].function"),
    ("keep-on-email", {"rules": [{**_RULE, "keep": 2}]}, "keep is a parameter of function Partial only"),
    ("constant-without-value", {"rules": [{**_RULE, "function": "Constant"}]}, "function Constant needs value"),
    ("real-domain", {"rules": [{**_RULE, "domain": "gmail.com"}]}, "spec.rules[0].domain"),
    ("max-days-on-hash", {"rules": [{**_RULE, "function": "Hash", "maxDays": 3}]},
     "maxDays is a parameter of function DateShift only"),
    ("same-column-twice", {"rules": [_RULE, {**_RULE, "function": "Hash"}]}, "Duplicate value"),
    ("bad-unclassified", {"unclassified": "Ignore"}, "spec.unclassified"),
    ("bad-not-personal", {"notPersonal": ["email"]}, "spec.notPersonal[0]"),
]


@pytest.mark.parametrize(("name", "spec", "message"), BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_bad_masking_policy_is_refused_with_a_clear_message(k8s: client.ApiClient, project: str, name: str,
                                                            spec: dict[str, Any], message: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MaskingPolicy", "metadata": {"name": name},
            "spec": {"keySecretRef": {"name": "masking-key"}, **spec} if name != "no-key" else spec}
    with pytest.raises(ApiException) as info:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(GROUP, VERSION, project, "maskingpolicies", body)
    assert info.value.status == 422 and message in str(info.value.body), info.value.body


def test_a_good_masking_policy_is_accepted(k8s: client.ApiClient, project: str) -> None:
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(GROUP, VERSION, project, "maskingpolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MaskingPolicy", "metadata": {"name": "good"},
        "spec": {**policy_spec("masking-key"), "personalNamePatterns": ["nick"], "unclassified": "Allow"}})


def test_database_server_replicas_dump_defaults_and_storage(k8s: client.ApiClient, project: str) -> None:
    spec: dict[str, Any] = {"host": "db.example.com", "adminSecretRef": {"name": "admin"},
                            "replicas": [{"host": "standby-1.example.com"}, {"host": "10.0.0.9", "port": 6432}],
                            "dump": {"maxRate": "50Mi", "streams": 2},
                            "storage": {"budgetBytes": 50 * 1024**3, "reserveBytes": 2 * 1024**3}}
    api = client.CustomObjectsApi(k8s)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer", "metadata": {"name": "gentle"},
            "spec": spec}
    created = api.create_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", body)
    assert created["spec"]["storage"]["budgetBytes"] == 50 * 1024**3
    for bad, message in (({"storage": {"budgetBytes": 0}}, "spec.storage.budgetBytes"),
                         ({"dump": {"maxRate": "100k"}}, "maxRate must be at least 1Mi"),
                         ({"replicas": [{"host": ""}]}, "spec.replicas[0].host")):
        body = {**body, "metadata": {"name": "gentle-bad"}, "spec": {**spec, **bad}}
        with pytest.raises(ApiException) as info:
            api.create_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", body)
        assert message in str(info.value.body)
