"""Login endpoints: ``POST /auth/token`` (bearer, OAuth2 password flow), ``POST /auth/login`` (session
cookie for the pages), ``POST /auth/logout``, ``GET /auth/me``; and admin's ``GET/POST /users``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from pydantic import BaseModel, Field

from medtwin.service.auth import COOKIE, User, csrf_token_for, current_user, require_role

__all__ = ["router", "login_cookie"]

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    """A bearer token (send as ``Authorization: Bearer <access_token>``)."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")


class Session(BaseModel):
    """The logged-in user and the CSRF token the pages must send with form posts."""

    username: str
    display_name: str
    role: str
    csrf_token: str


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["clinician", "pharmacist", "researcher", "auditor", "admin"]
    display_name: str | None = Field(None, max_length=200)


def _authenticate(request: Request, username: str, password: str) -> User:
    user = request.app.state.users.authenticate(username, password)
    if user is None:
        raise HTTPException(401, detail={"field": "password", "message": "wrong username or password"},
                            headers={"WWW-Authenticate": "Bearer"})
    return user


@router.post("/auth/token", response_model=Token, responses={401: {}},
             summary="OAuth2 password flow: a bearer token for the API")
def token(request: Request, username: str = Form(..., max_length=64), password: str = Form(..., max_length=256)):
    """Check the password; return a signed bearer token valid for the configured lifetime."""
    user = _authenticate(request, username, password)
    value, _ = request.app.state.tokens.issue(user.username)
    return Token(access_token=value, expires_in=request.app.state.tokens.lifetime_s)


def login_cookie(request: Request, response: Response, user: User) -> str:
    """Set the HttpOnly session cookie for *user* on *response*; return the session's CSRF token."""
    tokens = request.app.state.tokens
    value, sid = tokens.issue(user.username)
    response.set_cookie(COOKIE, value, max_age=tokens.lifetime_s, httponly=True, samesite="lax",
                        secure=request.app.state.settings.secure_cookies, path="/")
    return tokens.csrf(sid)


@router.post("/auth/login", response_model=Session, responses={401: {}},
             summary="Log in for the pages: sets the HttpOnly session cookie")
def login(request: Request, response: Response, username: str = Form(..., max_length=64),
          password: str = Form(..., max_length=256)):
    """Check the password; set the session cookie; return the user and the CSRF token for form posts."""
    user = _authenticate(request, username, password)
    csrf = login_cookie(request, response, user)
    return Session(**user.public(), csrf_token=csrf)


@router.post("/auth/logout", status_code=204, summary="Log out: clears the session cookie")
def logout(response: Response, user: User = Depends(current_user)):
    """Delete the session cookie (bearer tokens simply expire)."""
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=Session, summary="The current user (and CSRF token of a cookie session)")
def me(request: Request, user: User = Depends(current_user)):
    """Who is logged in."""
    return Session(**user.public(), csrf_token=csrf_token_for(request, user))


@router.get("/users", response_model=list[UserOut], summary="All users (admin)")
def list_users(request: Request, user: User = Depends(require_role("admin"))):
    """Every user with their role."""
    return [UserOut(**u.public()) for u in request.app.state.users.list()]


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user (admin)")
def create_user(request: Request, body: UserIn, user: User = Depends(require_role("admin"))):
    """Create a user with a role; 422 naming the field when the name exists or a value is refused."""
    created = request.app.state.users.create(body.username, body.password, body.role, body.display_name)
    return UserOut(**created.public())
