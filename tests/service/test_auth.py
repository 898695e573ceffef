"""Authentication and authorisation: login, roles, token expiry, CSRF on cookie form posts."""

from __future__ import annotations

from tests.service.conftest import token


def test_health_and_ready_need_no_login(service):
    assert service.get("/health").json() == {"status": "ok", "database": None}
    r = service.get("/ready")
    assert r.status_code == 200 and r.json()["database"] in ("sqlite", "postgresql")


def test_unauthenticated_refused(service):
    for path in ("/auth/me", "/users"):
        r = service.get(path)
        assert r.status_code == 401 and r.json()["detail"]["field"] == "Authorization"


def test_wrong_password_refused(service):
    r = service.post("/auth/token", data={"username": "admin", "password": "nope-nope"})
    assert r.status_code == 401 and r.json()["detail"]["field"] == "password"


def test_roles(service):
    assert service.get("/users", headers=token(service, "admin")).status_code == 200
    r = service.get("/users", headers=token(service, "clinician"))
    assert r.status_code == 403 and r.json()["detail"]["field"] == "role"


def test_create_user_names_the_field(service):
    admin = token(service, "admin")
    r = service.post("/users", json={"username": "nurse1", "password": "short", "role": "clinician"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "password"
    r = service.post("/users", json={"username": "clinician", "password": "long-enough", "role": "clinician"},
                     headers=admin)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "username"


def test_tokens_expire(sqlite_service, clock):
    headers = token(sqlite_service, "clinician")
    assert sqlite_service.get("/auth/me", headers=headers).status_code == 200
    clock.now += sqlite_service.app.state.settings.token_lifetime_s + 1
    assert sqlite_service.get("/auth/me", headers=headers).status_code == 401


def test_forged_token_refused(sqlite_service):
    headers = token(sqlite_service, "clinician")
    forged = headers["Authorization"][:-2] + ("AA" if not headers["Authorization"].endswith("AA") else "BB")
    assert sqlite_service.get("/auth/me", headers={"Authorization": forged}).status_code == 401


def test_cookie_session_and_csrf(sqlite_service):
    c = sqlite_service
    r = c.post("/auth/login", data={"username": "admin", "password": "admin-pass-1"})
    assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
    csrf = r.json()["csrf_token"]
    assert c.get("/auth/me").json()["username"] == "admin"  # GET with the cookie alone
    body = {"username": "nurse2", "password": "long-enough", "role": "clinician"}
    r = c.post("/users", json=body)  # unsafe method with the cookie, no CSRF token
    assert r.status_code == 403 and r.json()["detail"]["field"] == "csrf_token"
    assert c.post("/users", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert c.post("/users", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    r = c.post("/auth/logout", data={"csrf_token": csrf})  # the form-field variant
    assert r.status_code == 204
    c.cookies.clear()
    assert c.get("/auth/me").status_code == 401
