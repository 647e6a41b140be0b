"""The DatabaseServer probe writes status only when something changed, as the API server stores it
(a merge patch's null removes a field: an unset value must not count as a change next time)."""

from __future__ import annotations

from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch.branching import connection, servers


def test_an_unchanged_probe_writes_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    caps: dict[str, Any] = {"version": "18.1", "versionNum": 180001, "strategies": ["Template", "Dump"],
                            "fileCopyClone": False,
                            "tls": {"encrypted": False, "protocol": None, "verified": "None",
                                    "clientCertificate": False}}
    monkeypatch.setattr(connection, "probe", lambda ctx, project, name: (True, "Connected", "PostgreSQL 18.1", caps))
    monkeypatch.setattr(servers, "protect_admin_secret", lambda kube, body: None)
    world.kube.objects[("databaseservers", PROJECT, SERVER)]["status"] = {}
    for _ in range(3):
        servers.probe_server(world.ctx, world.kube.objects[("databaseservers", PROJECT, SERVER)])
    assert len(world.kube.patches) == 1
    assert "protocol" not in world.kube.objects[("databaseservers", PROJECT, SERVER)]["status"]["tls"]
