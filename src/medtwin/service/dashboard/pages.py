"""The dashboard's routes (server-rendered pages under ``/ward``; htmx and plotly.js enhance them).

=====================================  ===========================================  ==========================
route                                  what                                         roles
=====================================  ===========================================  ==========================
``GET  /``                             redirect to the user's home page             any
``GET/POST /ward/login``               log in (sets the session cookie)             anyone
``POST /ward/logout``                  log out                                      any (CSRF)
``GET  /ward``                         patient list: consent, last reading, alarms  clinician, pharmacist,
                                                                                    researcher
``GET  /ward/patients/{id}``           the twin page (forecast, posteriors, ...)    same, consent checked
``GET  /ward/patients/{id}/chart.json`` the page's charts, redrawn on live events   same
``POST /ward/patients/{id}/measurements`` record a measurement (live ingest)        clinician, pharmacist
``POST /ward/recommendations/{run}/decide`` accept / modify / override              clinician (CSRF)
``GET  /ward/audit``                   the audit trail, chain verified              auditor, admin
``GET  /ward/trials[/{job}]``          trials and a trial's forest plot             any
``GET  /ward/plotly.js``               plotly.js of the installed plotly package    anyone (cached a year)
=====================================  ===========================================  ==========================

A page refused for the role answers 403 (an HTML page saying why); a page asked without a session redirects
to the login page (303).  Form posts carry the session's CSRF token (checked by
:func:`medtwin.service.auth.optional_user`: 403 without it).
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from medtwin.errors import ConsentError, DataError
from medtwin.service.auth import User, csrf_token_for, optional_user
from medtwin.service.dashboard import charts, views

__all__ = ["install", "router"]

router = APIRouter(include_in_schema=False)

PATIENT_ROLES = ("clinician", "pharmacist", "researcher")
POST_ROLES = ("clinician", "pharmacist")
DECIDE_ROLES = ("clinician",)
AUDIT_ROLES = ("auditor", "admin")
HOME = {"auditor": "/ward/audit", "admin": "/ward/audit"}


class _Refused(Exception):
    def __init__(self, status: int, message: str, field: str = "role"):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _templates(request: Request):
    state = request.app.state
    templates = getattr(state, "dashboard_templates", None)
    if templates is None:
        from fastapi.templating import Jinja2Templates

        folder = resources.files("medtwin.service").joinpath("templates")
        templates = state.dashboard_templates = Jinja2Templates(directory=str(folder))
    return templates


def _render(request: Request, name: str, user: User | None, status: int = 200, **context) -> HTMLResponse:
    from importlib.metadata import version

    from medtwin import __version__

    base = {"request": request, "user": user, "base": "", "static_url": "/static", "version": __version__,
            "plotly_url": f"/ward/plotly.js?v={version('plotly')}",
            "csrf_token": csrf_token_for(request, user) if user else "",
            "can_audit": bool(user and user.role in AUDIT_ROLES), "section": None, "flash": None}
    base.update(context)
    return _templates(request).TemplateResponse(request, f"dashboard/{name}", base, status_code=status)


async def _user(request: Request, roles=None) -> User:
    user = await optional_user(request)
    if user is None:
        raise _Refused(303, "log in first", "session")
    if roles is not None and user.role not in roles:
        raise _Refused(403, f"role {user.role!r} may not see this page (needs {' or '.join(roles)})")
    return user


def _refusal(request: Request, exc: _Refused):
    if exc.status == 303:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ward/login?next={quote(target)}", status_code=303)
    return _render(request, "error.html", getattr(request.state, "user", None), exc.status,
                   title="Not allowed" if exc.status == 403 else "Error", message=exc.message, field=exc.field)


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else ""


def install(app) -> None:
    """Add the pages, the refusal handler and ``/static`` to *app* (called by ``create_app``)."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(router)
    app.add_exception_handler(_Refused, _refusal)
    app.mount("/static", StaticFiles(directory=str(resources.files("medtwin.service").joinpath("static"))),
              name="static")


# ---------------------------------------------------------------------------------------------- session
@router.get("/")
async def home(request: Request):
    user = await optional_user(request)
    if user is None:
        return RedirectResponse("/ward/login", status_code=303)
    return RedirectResponse(HOME.get(user.role, "/ward"), status_code=303)


@router.get("/ward/login")
async def login_page(request: Request, next: str = ""):
    return _render(request, "login.html", None, next=_safe_next(next), demo_users=_demo_users(request))


def _demo_users(request: Request) -> list[str]:
    if not request.app.state.settings.demo:
        return []
    from medtwin.service.demo import DEMO_USERS, demo_password

    return [f"{login} / {demo_password(role)} ({role})" for login, role, _ in DEMO_USERS]


@router.post("/ward/login")
async def login_submit(request: Request):
    from medtwin.service.auth_routes import login_cookie

    form = await request.form()
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
    user = await asyncio.to_thread(request.app.state.users.authenticate, username, password)
    if user is None:
        return _render(request, "login.html", None, 401, error="Wrong user name or password.", username=username,
                       next=_safe_next(str(form.get("next", ""))), demo_users=_demo_users(request))
    target = _safe_next(str(form.get("next", ""))) or HOME.get(user.role, "/ward")
    response = RedirectResponse(target, status_code=303)
    login_cookie(request, response, user)
    return response


@router.post("/ward/logout")
async def logout(request: Request):
    from medtwin.service.auth import COOKIE

    await _user(request)
    response = RedirectResponse("/ward/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------------------------- ward
@router.get("/ward", response_class=HTMLResponse)
async def ward(request: Request):
    user = await _user(request, PATIENT_ROLES)
    rows = await asyncio.to_thread(views.patient_list, request.app.state, user)
    return _render(request, "patients.html", user, section="ward", patients=rows,
                   purpose=views.ROLE_PURPOSE[user.role])


async def _patient(request: Request, pid: str, user: User):
    try:
        return await asyncio.to_thread(views.patient_view, request.app.state, user, pid)
    except ConsentError as exc:
        raise _Refused(403, f"consent: {exc}", "consent") from None
    except DataError as exc:
        missing = str(exc).startswith("patient:")
        raise _Refused(404 if missing else 422, str(exc), "patient" if missing else "twin") from None


@router.get("/ward/patients/{pid}", response_class=HTMLResponse)
async def patient_page(request: Request, pid: str):
    user = await _user(request, PATIENT_ROLES)
    view = await _patient(request, pid, user)
    stores = request.app.state.stores
    rec, decisions = await asyncio.to_thread(views.recommendation_view, stores, user, pid)
    next_time = f"{(view.measurements[-1].time if view.measurements else view.now) + 1 / 12:.3f}"
    flash = request.query_params.get("flash")
    return _render(request, "patient.html", user, section="ward", patient=view, chart=view.figure,
                   chart_label=f"Forecast of {view.output} ({view.unit}) with 50 % and 90 % bands and the "
                               f"{len(view.measurements)} measurements",
                   summary_caption=view.summary, forecast_rows=view.table, measurements=view.measurements,
                   output=view.output, unit=view.unit, posterior_chart=view.posterior_figure,
                   posterior_rows=view.posterior_rows, alarms=view.alarms, recommendation=rec, decisions=decisions,
                   can_post=user.role in POST_ROLES and view.live, can_decide=user.role in DECIDE_ROLES,
                   events_url=f"/patients/{quote(pid)}/events" if view.live else "",  # the API's SSE stream
                   live_message="", next_time=next_time, flash=flash,
                   flash_kind=request.query_params.get("kind", "ok"))


@router.get("/ward/patients/{pid}/chart.json")
async def patient_chart(request: Request, pid: str):
    user = await _user(request, PATIENT_ROLES)
    view = await _patient(request, pid, user)
    return JSONResponse(views.forecast_payload(view), headers={"Cache-Control": "no-store"})


@router.post("/ward/patients/{pid}/measurements")
async def post_measurement(request: Request, pid: str):
    user = await _user(request, POST_ROLES)
    form = await request.form()
    view = await _patient(request, pid, user)
    values = {}
    for name in ("time", "value"):
        try:
            values[name] = float(str(form.get(name, "")))
        except ValueError:
            return _form_error(request, pid, name, f"{name}: a number is required")
    from uuid import uuid4

    from medtwin.service.api_records import ingest  # the API's ingest: store, catch the twin up, publish

    row = {"kind": "obs", "name": view.output, "time_h": values["time"], "value": values["value"],
           "unit": view.unit, "device": "dashboard", "source_id": f"ui-{uuid4().hex}"}
    try:
        result, _ = await asyncio.to_thread(ingest, request, user, pid, [row], ["observations"])
    except ConsentError as exc:
        raise _Refused(403, f"consent: {exc}", "consent") from None
    except DataError as exc:
        return _form_error(request, pid, "value", str(exc))
    message = (f"Recorded {view.output} {values['value']:g} {view.unit} at {values['time']:g} h; "
               + ("the twin has assimilated it." if result.twin_error is None else f"twin: {result.twin_error}"))
    if request.headers.get("HX-Request"):
        return HTMLResponse(message)
    return RedirectResponse(f"/ward/patients/{quote(pid)}?flash={quote(message)}", status_code=303)


def _form_error(request: Request, pid: str, field: str, message: str):
    body = {"detail": [{"field": field, "message": message}]}
    if request.headers.get("HX-Request"):
        return HTMLResponse(f"Not recorded: {message}", status_code=422)
    if "text/html" in request.headers.get("accept", ""):
        return _render(request, "error.html", getattr(request.state, "user", None), 422, title="Not recorded",
                       message=message, field=field, back=f"/ward/patients/{quote(pid)}")
    return JSONResponse(body, status_code=422)


@router.post("/ward/recommendations/{run_id}/decide")
async def decide(request: Request, run_id: str):
    """Accept, modify or override a recorded recommendation (``workflows.DecideRequest`` via ``workflows.run``)."""
    from medtwin import workflows

    user = await _user(request, DECIDE_ROLES)
    form = await request.form()
    choice, reason = str(form.get("choice", "")), str(form.get("reason", "")).strip()[:500]
    pid = str(form.get("patient", ""))
    if choice not in ("accept", "modify", "override"):
        return _form_error(request, pid, "choice", "choice: accept, modify or override")
    if choice != "accept" and not reason:
        return _form_error(request, pid, "reason", f"reason: a reason is required to {choice} a recommendation")
    numbers = {}
    if choice != "accept":
        for name in ("dose_mg", "interval_h"):
            text = str(form.get(name, "")).strip()
            if text:
                try:
                    numbers[name] = float(text)
                except ValueError:
                    return _form_error(request, pid, name, f"{name}: a number is required")
    stores = request.app.state.stores
    if pid:
        await asyncio.to_thread(views.gate(stores, user).authorize, [pid], ["observations", "medications"], "write")
    try:
        request_ = workflows.DecideRequest(run_id, choice, user.username, reason=reason, purpose="treatment",
                                           **numbers)
        decision, record = await asyncio.to_thread(workflows.run, request_, stores, actor=user.username)
    except ConsentError as exc:
        raise _Refused(403, f"consent: {exc}", "consent") from None
    except DataError as exc:
        return _form_error(request, pid, _decision_field(str(exc)), str(exc))
    message = f"Decision recorded: {decision.choice} ({record.run_id[:12]}…)."
    request.app.state.broker.publish({"type": "decision", "patient": decision.patient,
                                      "data": {"choice": decision.choice, "decision": record.run_id}})
    target = f"/ward/patients/{quote(decision.patient)}" if decision.patient else "/ward"
    return RedirectResponse(f"{target}?flash={quote(message)}#recommendation", status_code=303)


def _decision_field(message: str) -> str:
    """The form field a refused decision is about (the workflow's messages name the CLI options)."""
    if "reason is required" in message:
        return "reason"
    if "--interval" in message or "interval" in message.split(":", 1)[-1][:40]:
        return "interval_h"
    if "dose" in message or "constraint" in message:
        return "dose_mg"
    return "choice"


# ---------------------------------------------------------------------------------------------- audit, trials
@router.get("/ward/audit", response_class=HTMLResponse)
async def audit(request: Request, action: str = ""):
    user = await _user(request, AUDIT_ROLES)
    stores = request.app.state.stores

    def work():
        verdict = stores.log.verify(stores.public_keys())
        rows, total, actions = views.audit_rows(stores, action or None)
        return verdict, rows, total, actions

    verdict, rows, total, actions = await asyncio.to_thread(work)
    ok = bool(getattr(verdict, "ok", verdict))
    message = (f"Hash chain and signatures verified ({total} entries)." if ok
               else f"Audit chain does NOT verify: {getattr(verdict, 'message', verdict)}")
    return _render(request, "audit.html", user, section="audit", entries=rows, total=total, actions=actions,
                   action=action, chain_ok=ok, chain_message=message)


@router.get("/ward/trials", response_class=HTMLResponse)
async def trials(request: Request):
    user = await _user(request)
    rows = await asyncio.to_thread(views.trial_rows, request.app.state.stores)
    return _render(request, "trials.html", user, section="trials", trials=rows, trial=None, figure=None)


@router.get("/ward/trials/{job_id}", response_class=HTMLResponse)
async def trial(request: Request, job_id: str):
    user = await _user(request)
    rows = await asyncio.to_thread(views.trial_rows, request.app.state.stores)
    job = next((r for r in rows if r["id"] == job_id), None)
    if job is None:
        raise _Refused(404, f"trial: no trial {job_id!r}", "job")
    forest, message = [], f"Trial {job['status']}."
    if job["status"] == "failed":
        message = f"Trial failed: {job['error']}"
    elif job["result"]:
        forest = views.forest_rows(json.loads(job["result"]))
        if not forest:
            message = "This trial's result has no subgroup estimates to draw."
    figure = charts.forest_figure(forest) if forest else None
    return _render(request, "trials.html", user, section="trials", trials=rows,
                   trial={"name": job["name"], "message": message}, figure=figure, rows=forest)


@router.get("/ward/plotly.js")
async def plotly_js(request: Request):
    """plotly.js from the installed plotly package (about 4.6 MB; cached by the browser for a year)."""
    state = request.app.state
    body = getattr(state, "dashboard_plotly", None)
    if body is None:
        from plotly.offline import get_plotlyjs

        body = state.dashboard_plotly = get_plotlyjs().encode()
    return Response(body, media_type="application/javascript",
                    headers={"Cache-Control": "public, max-age=31536000, immutable"})
