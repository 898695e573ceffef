"""Users, roles, password hashing, signed expiring tokens, session cookies, CSRF, and the auth dependencies.

* Passwords are hashed with argon2id (argon2-cffi); the hash is in ``users.password_hash``.
* ``POST /auth/token`` (OAuth2 password flow, form fields ``username``/``password``) returns a bearer token
  for the API; ``POST /auth/login`` (same fields) sets the HttpOnly session cookie ``medtwin_session`` for
  the pages and returns the CSRF token.  Both are the same signed value (itsdangerous, HMAC-SHA256 with the
  service's secret key) holding the user, a random session id and the expiry time; a token is refused after
  its expiry (the clock is ``app.state.clock``, so tests can move time) or when the user was deactivated.
* CSRF: a request authenticated by the cookie (not by a bearer token) with an unsafe method (POST, PUT, PATCH,
  DELETE) must carry the session's CSRF token in the ``X-CSRF-Token`` header or the ``csrf_token`` form
  field; the CSRF token is an HMAC of the session id, so it is only known to pages served to that session.
* :func:`current_user` is the FastAPI dependency of every protected endpoint; :func:`require_role` builds
  one that also checks the role.

Examples
--------
>>> codec = TokenCodec("s" * 32, lifetime_s=60, clock=lambda: 1000.0)
>>> token, _ = codec.issue("ada")
>>> codec.read(token)["u"]
'ada'
>>> TokenCodec("s" * 32, lifetime_s=60, clock=lambda: 1061.0).read(token) is None  # expired
True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request

from medtwin.errors import DataError
from medtwin.io.service_tables import ROLES, users_table

__all__ = ["COOKIE", "CSRF_HEADER", "CSRF_FIELD", "ROLES", "TokenCodec", "User", "UserStore", "current_user",
           "optional_user", "require_role", "csrf_token_for"]

#: Name of the session cookie of the pages.
COOKIE = "medtwin_session"
#: Header / form field carrying the CSRF token on cookie-authenticated unsafe requests.
CSRF_HEADER, CSRF_FIELD = "X-CSRF-Token", "csrf_token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class User:
    """The user of a request: login name, display name, role, how they authenticated, their session id."""

    username: str
    display_name: str
    role: str
    via: str = "bearer"  # "bearer" | "cookie"
    session: str = ""

    def public(self) -> dict:
        """The user as shown by the API (no secrets)."""
        return {"username": self.username, "display_name": self.display_name, "role": self.role}


class TokenCodec:
    """Signed, expiring tokens (itsdangerous ``URLSafeSerializer``; expiry checked against ``clock()``, s)."""

    def __init__(self, secret: str, *, lifetime_s: int, clock):
        from itsdangerous import URLSafeSerializer

        self._serializer = URLSafeSerializer(secret, salt="medtwin-session")
        self._secret = secret.encode()
        self.lifetime_s = int(lifetime_s)
        self.clock = clock

    def issue(self, username: str) -> tuple[str, str]:
        """A new token for *username* and its session id."""
        sid = secrets.token_urlsafe(16)
        return self._serializer.dumps({"u": username, "sid": sid, "exp": self.clock() + self.lifetime_s}), sid

    def read(self, token: str) -> dict | None:
        """The token's payload, or None when it is forged, malformed or expired."""
        from itsdangerous import BadSignature

        try:
            data = self._serializer.loads(token)
        except (BadSignature, UnicodeError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), (int, float)):
            return None
        return data if self.clock() < data["exp"] else None

    def csrf(self, session: str) -> str:
        """The CSRF token of a session (HMAC-SHA256 of the session id)."""
        return hmac.new(self._secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


class UserStore:
    """The ``users`` table: create, look up and authenticate users (argon2id hashes)."""

    def __init__(self, engine, *, time_cost: int = 3, memory_kib: int = 65536):
        from argon2 import PasswordHasher

        self.engine = engine
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(12))  # equal work for unknown users

    def create(self, username: str, password: str, role: str, display_name: str | None = None) -> User:
        """Add a user; :class:`~medtwin.errors.DataError` naming the field when a value is not acceptable."""
        if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise DataError("username: 1-64 letters, digits, '-', '_' or '.'")
        if role not in ROLES:
            raise DataError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise DataError("password: at least 8 characters")
        row = {"username": username, "display_name": display_name or username, "role": role,
               "password_hash": self._hasher.hash(password), "active": True, "created_at": _now_iso()}
        try:
            with self.engine.begin() as conn:
                conn.execute(users_table.insert().values(**row))
        except sa.exc.IntegrityError:
            raise DataError(f"username: {username!r} already exists") from None
        return User(username, row["display_name"], role)

    def get(self, username: str) -> User | None:
        """The active user *username*, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.username == username)).first()
        if row is None or not row.active:
            return None
        return User(row.username, row.display_name, row.role)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when *password* is theirs, else None (same argon2 work either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.username == username)).first()
        try:
            self._hasher.verify(row.password_hash if row is not None else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.active:
            return None
        return User(row.username, row.display_name, row.role)

    def count(self) -> int:
        """How many users exist."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(users_table)).scalar_one()

    def list(self) -> list[User]:
        """Every user, by login name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users_table).order_by(users_table.c.username)).all()
        return [User(r.username, r.display_name, r.role) for r in rows]


def csrf_token_for(request: Request, user: User) -> str:
    """The CSRF token a page must embed (form field ``csrf_token`` or header ``X-CSRF-Token``) for *user*."""
    return request.app.state.tokens.csrf(user.session) if user.session else ""


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail={"field": "Authorization", "message": detail},
                         headers={"WWW-Authenticate": "Bearer"})


async def _check_csrf(request: Request, user: User) -> None:
    if request.method not in _UNSAFE or not request.app.state.settings.csrf:
        return
    expected = request.app.state.tokens.csrf(user.session)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get(CSRF_FIELD)  # starlette caches the parsed form for the endpoint
    if not sent or not hmac.compare_digest(str(sent), expected):
        raise HTTPException(403, detail={"field": CSRF_FIELD, "message": "missing or wrong CSRF token "
                                         f"(send it in the {CSRF_HEADER} header or the {CSRF_FIELD} form field)"})


async def optional_user(request: Request) -> User | None:
    """The authenticated user of the request (bearer token first, then session cookie), or None."""
    state = request.app.state
    auth = request.headers.get("authorization", "")
    via, token = ("bearer", auth[7:].strip()) if auth[:7].lower() == "bearer " else ("cookie",
                                                                                       request.cookies.get(COOKIE))
    if not token:
        return None
    data = state.tokens.read(token)
    if data is None:
        return None
    user = state.users.get(str(data.get("u")))
    if user is None:
        return None
    user = User(user.username, user.display_name, user.role, via, str(data.get("sid", "")))
    if via == "cookie":
        await _check_csrf(request, user)
    request.state.user = user
    return user


async def current_user(request: Request) -> User:
    """FastAPI dependency: the authenticated user; 401 without a valid, unexpired token or session cookie."""
    user = await optional_user(request)
    if user is None:
        raise _unauthorized("not authenticated: log in (POST /auth/token or /auth/login); a token expires")
    return user


def require_role(*roles: str):
    """FastAPI dependency factory: the current user, 403 unless their role is one of *roles*."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    async def dependency(user: User = Depends(current_user)) -> User:
        if user.role not in roles:
            raise HTTPException(403, detail={"field": "role", "message": f"role {user.role!r} may not do this "
                                             f"(needs {' or '.join(roles)})"})
        return user

    return dependency
