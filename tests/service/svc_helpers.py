"""Helpers of the service tests (imported by conftest.py and the test modules): an app over a database URL with
one user per role, bearer tokens, a settable clock, a patient, a small live-twin specification."""

from __future__ import annotations

ROLES = ("clinician", "pharmacist", "researcher", "auditor", "admin")


class Clock:
    """A settable clock (s since the epoch) for token expiry."""

    def __init__(self):
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


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


PK_SPEC = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"], "initial_sd": {"CL": 0.3},
           "parameter_drift": {"CL": 1e-3}, "errors": {"C": {"model": "additive", "additive": 0.5}}}


def new_patient(client, headers, pid: str, **query) -> None:
    """Register a FHIR Patient *pid*."""
    r = client.post("/patients", json={"resourceType": "Patient", "id": pid, "name": [{"text": f"Patient {pid}"}]},
                    headers=headers, params={"origin": "2026-01-01T00:00:00Z", **query})
    assert r.status_code == 201, r.text

