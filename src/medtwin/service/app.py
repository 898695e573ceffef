"""The FastAPI application factory of ``medtwin serve``.

:func:`create_app` builds a new app from :class:`~medtwin.service.settings.ServiceSettings` (read from the
environment when not given); nothing happens at import time.  The lifespan handler opens the installation's
stores (database migrated to head, Ed25519 signing key and audit checkpoint under the data home, exactly as
:func:`medtwin.workflows.stores.open_stores`) and keeps everything a request needs on ``app.state``:

=====================  =====================================================================================
``app.state.settings`` the :class:`ServiceSettings`
``app.state.stores``   :class:`medtwin.workflows.stores.Stores` (engine, key, audit log, consents, runs, ...)
``app.state.users``    :class:`medtwin.service.auth.UserStore`
``app.state.tokens``   :class:`medtwin.service.auth.TokenCodec` (signed expiring tokens, CSRF tokens)
``app.state.broker``   :class:`medtwin.service.events.EventBroker` (live events to dashboards)
``app.state.jobs``     :class:`medtwin.service.jobs.JobRunner` (background jobs: trials)
``app.state.services`` :class:`medtwin.service.livetwin.Services`: ``patients``, ``records``, ``twins``
``app.state.clock``    ``() -> float`` seconds since the epoch (tests move it to expire tokens)
=====================  =====================================================================================

On shutdown the job threads are asked to stop and the database engine is disposed.  Every request is logged
as one JSON line (method, path, status, duration, user).

Examples
--------
>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> d = tempfile.mkdtemp()
>>> app = create_app(ServiceSettings(database_url=f"sqlite:///{d}/m.db", home=d, secret_key="k" * 32))
>>> with TestClient(app) as client:
...     client.get("/health").json()["status"], client.get("/ready").status_code
('ok', 200)
"""

from __future__ import annotations

import contextlib
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from medtwin.errors import ConsentError, MedtwinError
from medtwin.service.logs import LOGGER, configure_logging
from medtwin.service.settings import ServiceSettings

__all__ = ["create_app", "open_service_stores"]


def open_service_stores(settings: ServiceSettings):
    """The installation's :class:`~medtwin.workflows.stores.Stores` for *settings* (migrated to head)."""
    from medtwin.governance.audit_checkpoint import checkpoint_path
    from medtwin.governance.provenance import load_or_create_key
    from medtwin.io.storage import make_engine, upgrade
    from medtwin.workflows.stores import Stores

    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    keys = settings.data_home() / "keys"
    key = load_or_create_key(keys)
    return Stores.for_engine(engine, key, checkpoint=checkpoint_path(keys, engine), migrate=False)


def _bootstrap_admin(app: FastAPI, log: logging.Logger) -> None:
    settings, users = app.state.settings, app.state.users
    if settings.admin_password and users.get(settings.admin_user) is None:
        users.create(settings.admin_user, settings.admin_password, "admin", "Administrator")
        log.info("admin user created", extra={"fields": {"user": settings.admin_user}})


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    import asyncio

    from medtwin.service.auth import TokenCodec, UserStore
    from medtwin.service.jobs import JobRunner
    from medtwin.service.livetwin import Services

    log = logging.getLogger(LOGGER)
    settings: ServiceSettings = app.state.settings
    stores = open_service_stores(settings)
    app.state.stores = stores
    app.state.users = UserStore(stores.engine, time_cost=settings.password_time_cost,
                                memory_kib=settings.password_memory_kib)
    app.state.tokens = TokenCodec(settings.resolved_secret_key(), lifetime_s=settings.token_lifetime_s,
                                  clock=lambda: app.state.clock())
    app.state.broker.bind_loop(asyncio.get_running_loop())
    app.state.jobs = JobRunner(stores.engine, max_workers=settings.job_workers)
    app.state.services = Services.for_engine(stores.engine)
    _bootstrap_admin(app, log)
    if settings.demo:
        from medtwin.service import demo  # the demo ward (medtwin serve --demo)

        demo.seed_demo(app)
    log.info("service started", extra={"fields": {"database": stores.engine.url.render_as_string(
        hide_password=True), "demo": settings.demo}})
    try:
        yield
    finally:
        app.state.jobs.shutdown()
        stores.engine.dispose()
        log.info("service stopped")


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"field": field, "message": message}}, status_code=status)


def _field_of(exc: Exception) -> str:
    """The field a library error names: its ``field`` attribute, else the message's ``field:`` prefix, else
    ``body``."""
    import re

    field = getattr(exc, "field", None) or getattr(exc, "path", None)
    if isinstance(field, str) and field:
        return field
    head = str(exc).split(":", 1)[0].strip()
    return head if ":" in str(exc) and re.fullmatch(r"[\w\[\]\.'=, -]{1,80}", head) else "body"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConsentError)
    async def _consent(request: Request, exc: ConsentError):
        return _error(403, "consent", str(exc))

    @app.exception_handler(MedtwinError)
    async def _medtwin(request: Request, exc: MedtwinError):
        return _error(422, _field_of(exc), str(exc))

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, dict) else {
            "field": "path" if exc.status_code in (404, 405) else "request", "message": str(exc.detail)}
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        def field(loc) -> str:
            loc = list(loc)
            where = loc.pop(0) if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
            return ".".join(str(p) for p in loc) or where

        errors = [{"field": field(e.get("loc", ())),
                   "loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.middleware("http")
    async def _access_log(request: Request, call_next):
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            user = getattr(request.state, "user", None)
            logging.getLogger(LOGGER).info("request", extra={"fields": {
                "method": request.method, "path": request.url.path, "status": status,
                "ms": round(1000 * (time.perf_counter() - start), 2),
                "user": getattr(user, "username", None)}})


def create_app(settings: ServiceSettings | None = None, *, clock=None) -> FastAPI:
    """A new medtwin service app (settings from the environment when not given; *clock* for tests).

    Parameters
    ----------
    settings : ServiceSettings, optional
        Default: ``ServiceSettings()`` (the ``MEDTWIN_*`` environment).
    clock : callable, optional
        ``() -> float`` seconds since the epoch (default ``time.time``); tokens expire against it.

    Returns
    -------
    fastapi.FastAPI
    """
    from medtwin.service import api, auth_routes, health
    from medtwin.service.events import EventBroker

    settings = settings or ServiceSettings()
    configure_logging(settings.log_level)
    app = FastAPI(title="medtwin", version="0.1.0", lifespan=_lifespan,
                  description="Medical digital twins as a service: patients, consents, live ingest, twins, "
                              "forecasts, recommendations and decisions, provenance and audit.  Every endpoint "
                              "but /health, /ready and the login needs a bearer token or session cookie.")
    app.state.settings = settings
    app.state.clock = clock or time.time
    app.state.broker = EventBroker()
    _install_handlers(app)
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    for router in api.routers():
        app.include_router(router)
    from medtwin.service import dashboard

    dashboard.install(app)  # the pages under /ward, /static (svcui)
    return app
