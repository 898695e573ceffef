"""Service test fixtures: an app on a fresh SQLite file or PostgreSQL schema (``pg_url``, tests/conftest.py),
with one user per role."""

from __future__ import annotations

import pytest
from svc_helpers import Clock, make_service


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path, clock):
    """A TestClient on SQLite, then on PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'svc.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    client = make_service(url, tmp_path, clock)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture
def sqlite_service(tmp_path, clock):
    """A TestClient on a SQLite file only."""
    client = make_service(f"sqlite:///{tmp_path / 'svc.db'}", tmp_path, clock)
    yield client
    client.__exit__(None, None, None)
