"""``GET /health`` (the process answers) and ``GET /ready`` (the database answers); no authentication."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["router"]

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    database: str | None = None


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
def health() -> Health:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}},
            summary="Readiness: the database answers")
def ready(request: Request):
    """``ok`` when a ``SELECT 1`` on the database succeeds, else 503 ``unavailable``."""
    try:
        with request.app.state.stores.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return Health(status="ok", database=request.app.state.stores.engine.dialect.name)
