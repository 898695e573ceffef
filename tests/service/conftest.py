"""Service test fixtures: an app on a fresh SQLite file or PostgreSQL schema, with one user per role.

PostgreSQL is ``MEDTWIN_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
skipped with the reason when unreachable, failed instead when ``MEDTWIN_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import os
import uuid

import pytest
from svc_helpers import PG_URL, Clock, _pg_unreachable, make_service


@pytest.fixture
def pg_url():
    """A URL on a fresh PostgreSQL schema (dropped afterwards)."""
    from medtwin.io.storage import make_engine

    why = _pg_unreachable()
    if why:
        if os.environ.get("MEDTWIN_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    schema = "svc_" + uuid.uuid4().hex[:12]
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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
