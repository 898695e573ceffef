"""The API's routers, in the order the app includes them (see :func:`medtwin.service.app.create_app`)."""

from __future__ import annotations

__all__ = ["routers"]


def routers() -> list:
    """The resource routers (patients, consents, records, twins, decisions, runs, audit, trials)."""
    return []
