"""One-line errors: a missing object and a missing resource type (CRDs not installed) differ by body."""

from __future__ import annotations

import json

import pytest
import typer
from kubernetes.client.rest import ApiException

from envbranch.cli.main import friendly_errors


def _error(status: int, body: str) -> ApiException:
    exc = ApiException(status=status, reason="Not Found" if status == 404 else "Forbidden")
    exc.body = body
    return exc


@pytest.mark.parametrize(("exc", "expected"), [
    (_error(404, json.dumps({"kind": "Status", "reason": "NotFound",
                             "message": 'environments.envbranch.io "nope" not found',
                             "details": {"name": "nope", "group": "envbranch.io", "kind": "environments"}})),
     "error: Environment 'nope' not found in namespace 'shop'"),
    (_error(404, "404 page not found\n"), "error: the envbranch CRDs are not installed in this cluster"),
    (_error(403, json.dumps({"message": 'environments.envbranch.io is forbidden: User "nobody" cannot list'})),
     'error: permission denied: environments.envbranch.io is forbidden: User "nobody" cannot list'),
    (ConnectionRefusedError(111, "Connection refused"), "error: cannot reach the Kubernetes API server"),
])
def test_failures_become_one_line(exc: BaseException, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as ended, friendly_errors("shop"):
        raise exc
    assert ended.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1
