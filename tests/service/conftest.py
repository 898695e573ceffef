"""Service test fixtures: an app on a fresh SQLite file or PostgreSQL schema, with one user per role.

PostgreSQL is ``MEDTWIN_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
skipped with the reason when unreachable, failed instead when ``MEDTWIN_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROLES = ("clinician", "pharmacist", "researcher", "auditor", "admin")


class Clock:
    """A settable clock (s since the epoch) for token expiry."""

    def __init__(self):
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _pg_unreachable() -> str | None:
    from medtwin.io.storage import make_engine

    try:
        eng = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.exec_driver_sql("select 1")
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        return f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}: {exc})"


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


def make_service(url: str, home, clock=None, **settings):
    """A TestClient (entered) on a new app over *url*, users ``<role>``/``<role>-pass-1`` created."""
    from fastapi.testclient import TestClient

    from medtwin.service.app import create_app
    from medtwin.service.settings import ServiceSettings

    settings = {"password_time_cost": 1, "password_memory_kib": 8192, **settings}  # cheap hashes for tests
    s = ServiceSettings(database_url=url, home=str(home), secret_key="test-secret-" + "x" * 20, **settings)
    app = create_app(s, clock=clock)
    client = TestClient(app)
    client.__enter__()
    for role in ROLES:
        if app.state.users.get(role) is None:
            app.state.users.create(role, f"{role}-pass-1", role, role.title())
    return client


def token(client, role: str, password: str | None = None) -> dict:
    """Authorization header of *role*'s bearer token."""
    r = client.post("/auth/token", data={"username": role, "password": password or f"{role}-pass-1"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


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


PK_SPEC = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"], "initial_sd": {"CL": 0.3},
           "parameter_drift": {"CL": 1e-3}, "errors": {"C": {"model": "additive", "additive": 0.5}}}


def new_patient(client, headers, pid: str, **query) -> None:
    """Register a FHIR Patient *pid*."""
    r = client.post("/patients", json={"resourceType": "Patient", "id": pid, "name": [{"text": f"Patient {pid}"}]},
                    headers=headers, params={"origin": "2026-01-01T00:00:00Z", **query})
    assert r.status_code == 201, r.text
