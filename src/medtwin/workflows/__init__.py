"""The workflow layer: one request type per operation, and ``run(request, stores) -> (result, signed record)``.

Used by the command line (:mod:`medtwin.cli`), the coming REST service and
:func:`reproduce` alike: parse -> request -> :func:`run` -> render.

* :mod:`~medtwin.workflows.requests`: :class:`SimulateRequest`,
  :class:`SimulateDatasetRequest`, :class:`FitRequest`, :class:`PersonalizeRequest`,
  :class:`ForecastRequest`, :class:`RecommendRequest`, :class:`ReplayRequest`,
  :class:`DecideRequest`; each knows its stored spec, and
  :func:`request_from_spec` rebuilds a request from a stored run.
* :mod:`~medtwin.workflows.engine`: :func:`execute` (the one executor),
  :func:`run` (execute + signed provenance + audit entry, one transaction),
  :func:`reproduce` / :func:`reproduce_run`.
* :mod:`~medtwin.workflows.stores`: :class:`Stores` (database, key, audit log,
  consents, runs, decisions) and :func:`open_stores`.
"""

from medtwin.workflows.averaging import (AveragedForecastRequest, AveragedRecommendRequest, forecast_request,
                                         recommend_request)
from medtwin.workflows.decide import stored_recommendation
from medtwin.workflows.engine import execute, reproduce, reproduce_run, run, run_and_record
from medtwin.workflows.requests import (
    DecideRequest, FitRequest, ForecastRequest, PersonalizeRequest, RecommendRequest, ReplayRequest,
    SimulateDatasetRequest, SimulateRequest, request_from_spec,
)
from medtwin.workflows.results import Forecast, Recommended, Replayed
from medtwin.workflows.stores import Stores, data_access, default_actor, open_stores

__all__ = ["AveragedForecastRequest", "AveragedRecommendRequest", "forecast_request", "recommend_request",
           "DecideRequest", "FitRequest", "Forecast", "ForecastRequest", "PersonalizeRequest", "RecommendRequest",
           "Recommended", "Replayed", "ReplayRequest", "SimulateDatasetRequest", "SimulateRequest", "Stores",
           "data_access", "default_actor", "execute", "open_stores", "reproduce", "reproduce_run",
           "request_from_spec", "run", "run_and_record", "stored_recommendation"]
