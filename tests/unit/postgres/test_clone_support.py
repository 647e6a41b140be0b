"""The reflink-clone trial (it creates a throwaway database) runs once per server for the life of the
CloneSupport a Server carries; a Server without one tries at every ask."""

from __future__ import annotations

import importlib

import pytest

from envbranch.postgres.server import Server

probe = importlib.import_module("envbranch.postgres.probe")  # the module (the package exports a function of that name)


def test_the_trial_is_kept_per_server_by_its_clone_support(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[tuple[str, int]] = []
    monkeypatch.setattr(probe, "file_copy_clone_works", lambda s: tried.append((s.host, s.port)) or s.port == 5432)
    support = probe.CloneSupport()
    a, b = (Server("db", port, "admin", "pw", clone_support=support) for port in (5432, 5433))
    assert [probe.clone_supported(s) for s in (a, a, b, b)] == [True, True, False, False]
    assert tried == [("db", 5432), ("db", 5433)]
    assert probe.clone_supported(Server("db", 5432, "admin", "pw", clone_support=probe.CloneSupport()))
    assert len(tried) == 3  # another CloneSupport (another operator's context) keeps its own answers


def test_a_server_without_clone_support_tries_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    monkeypatch.setattr(probe, "file_copy_clone_works", lambda s: tried.append(s.host) is None)
    plain = Server("db", 5432, "admin", "pw")
    assert probe.clone_supported(plain) and probe.clone_supported(plain)
    assert tried == ["db", "db"]
