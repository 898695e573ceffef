"""The API's routers, in the order the app includes them (see :func:`medtwin.service.app.create_app`)."""

from __future__ import annotations

__all__ = ["routers"]


def routers() -> list:
    """The resource routers: patients and consents, records and events, twins and decisions, governance, trials."""
    from medtwin.service import api_governance, api_patients, api_records, api_trials, api_twins

    return [api_patients.router, api_records.router, api_twins.router, api_governance.router, api_trials.router]
