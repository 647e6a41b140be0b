"""The reconcile core against in-memory fakes (core_fakes.py)."""

from __future__ import annotations

import pytest
from core_fakes import World, install


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return install(monkeypatch)
