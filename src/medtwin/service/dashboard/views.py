"""What the dashboard pages show, assembled from the service's tables and the workflow stores.

The functions here read (never write) the service's patients, records and stored twins (``app.state.services``,
the stored twin caught up with the records as the API does), the jobs table and the audit log, and compute the
forecasts a page draws.  Every read of a patient's clinical data goes through the consent
gate (:class:`~medtwin.governance.consent_store.ConsentGate`, audited) with the purpose of the reader's role
(:data:`ROLE_PURPOSE`).  Forecasts are cached per patient and data version on ``app.state`` (no module state).

Examples
--------
>>> forest_rows({"overall": {"estimate": -0.8, "low": -1.1, "high": -0.5, "n": 400}})
[{'label': 'overall', 'estimate': -0.8, 'low': -1.1, 'high': -0.5, 'n': 400}]
>>> _proposal({"action": {"dose_mg": 1250.0, "interval_h": 12.0, "infusion_h": 1.25}, "status": "optimal"})
'Give 1250 mg every 12 h as a 1.25-h infusion (optimal)'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from medtwin.errors import DataError
from medtwin.service.dashboard import charts

__all__ = ["ROLE_PURPOSE", "PatientView", "audit_rows", "forecast_payload", "gate", "patient_list",
           "patient_view", "recommendation_view", "trial_rows"]

#: The consent purpose a role reads patient data for.
ROLE_PURPOSE = {"clinician": "treatment", "pharmacist": "treatment", "researcher": "research"}
#: Hours of forecast drawn after a live twin's current time, and of history before it.
LIVE_HORIZON_H, LIVE_HISTORY_H = 2.0, 6.0
#: Hours of forecast after a treatment twin's last level.
TREATMENT_HORIZON_H = 48.0


def gate(stores, user):
    """The consent gate of *user* (purpose from their role); :class:`DataError` for a role without one."""
    from medtwin.governance.consent_store import ConsentGate

    purpose = ROLE_PURPOSE.get(user.role)
    if purpose is None:
        raise DataError(f"role: {user.role!r} reads no patient data")
    return ConsentGate(stores.consents, user.username, purpose)


def patient_list(app_state, user) -> list[dict]:
    """One row per patient: name, kind, consent for the user's purpose, last reading, alarms, recommendation.

    The consent decisions of all patients are made (and audited) in one transaction; data of a patient whose
    consent denies the purpose are not read (the row says so).
    """
    stores, services = app_state.stores, app_state.services
    patients = services.patients.list()
    if not patients:
        return []
    access = gate(stores, user)
    decisions = access.store.check_many([p["id"] for p in patients], access.actor, access.purpose,
                                        ["observations"], operation="read")
    permit = {p["id"]: d.permit for p, d in zip(patients, decisions)}  # patient-major, one data class
    recs = _recommended_patients(stores)
    rows = []
    for p in patients:
        pid, ok = p["id"], permit.get(p["id"], False)
        row = {"id": pid, "name": p["display_name"], "kind": "—", "readable": ok,
               "consent": "permit" if ok else "deny", "last_reading": None, "alarms": [], "recommendation": None}
        if ok:
            twin, _ = services.twins.get(pid, access)
            if twin is not None:
                row["kind"] = kind_label(twin)
                row["alarms"] = [a.kind for a in twin.alarms]
            last = services.records.list(pid, kind="obs")
            if last:
                r = last[-1]
                row["last_reading"] = f"{r['name']} {r['value']:.3g} {r['unit']} at {r['time_h']:.2f} h"
            row["recommendation"] = recs.get(pid)
        rows.append(row)
    return rows


_MODEL_LABELS = {"icing": "ICU glucose (ICING)", "vancomycin_goti2018": "vancomycin (Goti 2018)"}


def kind_label(twin) -> str:
    """What kind of twin a patient has, in words (e.g. ``ICU glucose (ICING), live twin``)."""
    model = _MODEL_LABELS.get(twin.model.name, twin.model.name)
    return f"{model}, {'live' if twin.belief is not None else 'treatment'} twin"


def _recommended_patients(stores) -> dict[str, str]:
    """Patient -> the headline of their latest recorded recommendation (from the audit log)."""
    out = {}
    for entry in stores.log.entries():
        if entry.action == "run.record" and "recommendation" in entry.payload and entry.patient:
            content = json.loads(entry.payload["recommendation"])
            out[entry.patient] = _headline(content)
    return out


def _headline(content: dict) -> str:
    action = content.get("action") or {}
    if "dose_mg" in action and "interval_h" in action:
        return f"{action['dose_mg']:.0f} mg q{action['interval_h']:g}h ({content.get('status', '')})"
    return ", ".join(f"{k}={v}" for k, v in action.items())


@dataclass
class PatientView:
    """Everything the twin page of one patient shows."""

    id: str
    name: str
    kind: str
    facts: list = field(default_factory=list)
    output: str = "C"
    unit: str = "mg/L"
    measurements: list = field(default_factory=list)
    figure: dict | None = None
    table: list = field(default_factory=list)
    posterior_rows: list = field(default_factory=list)
    posterior_figure: dict | None = None
    alarms: list = field(default_factory=list)
    revision: str = "0"
    live: bool = False
    now: float = 0.0
    summary: str = ""


@dataclass(frozen=True)
class _Measured:
    time: float
    value: float
    source: str | None = None


def patient_view(app_state, user, pid: str) -> PatientView:
    """The twin page of *pid* for *user*: consent checked first (ConsentError when denied), DataError for an
    unknown patient; the stored twin is caught up with the patient's records (the service's ``twins``)."""
    services = app_state.services
    p = services.patients.get(pid)
    if p is None:
        raise DataError(f"patient: no patient {pid!r}")
    access = gate(app_state.stores, user)
    access.authorize([pid], ["observations", "medications"], "read")
    twin, row = services.twins.get(pid, access)
    facts = [("ward", p.get("ward") or "—"), ("bed", p.get("bed") or "—")]
    if twin is None:
        return PatientView(pid, p["display_name"], "no twin yet", facts)
    key = (pid, row["version"])
    cache = _cache(app_state)
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        build = _live_view if twin.belief is not None else _treatment_view
        cache[key] = build(p, twin, row, facts)
    return cache[key]


def _cache(app_state) -> dict:
    cache = getattr(app_state, "dashboard_cache", None)
    if cache is None:
        cache = app_state.dashboard_cache = {}
    return cache


def _live_view(p, twin, row, facts) -> PatientView:
    output = next(iter(twin.errors), twin.model.output_names[0])
    unit = twin.model.output(output).unit
    measured = [_Measured(e.measurement.time, e.measurement.value, e.measurement.source_id or e.measurement.device)
                for e in twin.history if e.measurement.output == output]
    now = twin.time
    band = twin.forecast(None, horizon=LIVE_HORIZON_H, step=0.25, n_draws=200, seed=int(row["version"]))
    q = charts.band_quantiles(band, output, residual=True)
    recent = [m for m in measured if m.time >= now - LIVE_HISTORY_H]
    figure = charts.forecast_figure(band.times, q, [(m.time, m.value) for m in recent], output=output, unit=unit,
                                    title=f"{output} ({unit}): last {LIVE_HISTORY_H:g} h and the next "
                                          f"{LIVE_HORIZON_H:g} h (50 % and 90 % bands)", now=now)
    state = twin.state()
    rows = [{"parameter": k, "unit": state.units.get(k, ""), "prior_median": twin.model.parameter(k).value, **v}
            for k, v in state.parameters.items()]
    facts = facts + [("twin time", f"{now:.2f} h"), ("readings", str(len(measured)))]
    return PatientView(p["id"], p["display_name"], kind_label(twin), facts, output, unit, measured,
                       figure, _table(band.times, q), rows, charts.posterior_figure(rows) if rows else None,
                       [_alarm_text(a) for a in twin.alarms], str(row["version"]), True, now,
                       f"forecast of {output} from {now:.2f} h ({LIVE_HORIZON_H:g} h ahead, with measurement error)")


def _alarm_text(alarm) -> str:
    kind = getattr(alarm, "kind", None) or "alarm"
    message = getattr(alarm, "message", "")
    return f"{kind}: {message}" if message else str(kind)


def _table(times, q) -> list:
    times = np.asarray(times, dtype=float)
    step = max(1, len(times) // 12)
    return [(f"{times[i]:.2f}", f"{q[0, i]:.3g}", f"{q[2, i]:.3g}", f"{q[4, i]:.3g}")
            for i in range(0, len(times), step)]


def latest_recommendation(stores, pid: str):
    """(run id, content) of the newest recorded recommendation of *pid*, or None."""
    found = None
    for entry in stores.log.entries(patient=pid):
        if entry.action == "run.record" and "recommendation" in entry.payload:
            found = (entry.payload["run_id"], json.loads(entry.payload["recommendation"]))
    return found


def _treatment_view(p, twin, row, facts) -> PatientView:
    posterior = twin.posterior
    data = posterior.data[-1] if posterior.data else None
    levels = [(float(t), float(v)) for d in posterior.data for t, v in zip(d.times, d.values)]
    last = max((t for t, _ in levels), default=twin.time)
    end = last + TREATMENT_HORIZON_H
    grid = np.round(np.arange(0.0, end + 1e-9, 0.25), 10)
    band = posterior.predict(twin.inputs.continued(end), grid, n_draws=400, seed=0)
    output = posterior.prior.residual.output
    unit = twin.model.output(output).unit
    q = charts.band_quantiles(band, output)
    measured = [_Measured(t, v) for t, v in sorted(levels)]
    figure = charts.forecast_figure(grid, q, [(m.time, m.value) for m in measured], output=output, unit=unit,
                                    title=f"{posterior.model.name} {output} ({unit}): current regimen continued "
                                          f"{TREATMENT_HORIZON_H:g} h (50 % and 90 % bands)", now=last)
    summary = posterior.summary(n=2000, seed=0)
    rows = [{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()} for r in summary.to_dict("records")]
    covariates = (row["spec"] or {}).get("covariates") or (data.covariates if data is not None else {})
    facts = facts + [(k, f"{float(v):g}") for k, v in covariates.items() if k in ("CRCL", "WT")]
    auc = band.auc(output, end - 24.0, end)
    facts.append(("AUC24 last day", f"{np.median(auc):.0f} mg·h/L (90 %: {np.quantile(auc, .05):.0f}–"
                                    f"{np.quantile(auc, .95):.0f})"))
    return PatientView(p["id"], p["display_name"], kind_label(twin), facts, output, unit,
                       measured, figure, _table(grid, q), rows, charts.posterior_figure(rows),
                       list(posterior.warnings()), str(row["version"]), False, last,
                       f"posterior predictive of {output}, current regimen continued")


def recommendation_view(stores, user, pid: str) -> tuple[dict | None, list]:
    """The newest recommendation of *pid* (headline, explanation lines, run id, dose, interval) and the
    decisions recorded on the patient (read through the user's consent gate)."""
    from medtwin.workflows.results import recommendation_from_content

    found = latest_recommendation(stores, pid)
    if found is None:
        return None, []
    run_id, content = found
    rec = recommendation_from_content(content)
    lines = [line for line in rec.summary().splitlines() if line.strip()]
    action = content.get("action") or {}
    view = {"run_id": run_id, "headline": _proposal(content) or (lines[0] if lines else run_id),
            "explanation": _explain(content, lines), "full": rec.summary(),
            "dose_mg": action.get("dose_mg"), "interval_h": action.get("interval_h")}
    decisions = []
    for s in stores.decisions.for_patient(pid, access=gate(stores, user)):
        d = s.decision
        given = d.given or {}
        decisions.append({"choice": d.choice, "clinician": d.clinician, "reason": d.reason,
                          "timestamp": d.timestamp or "", "given": _action_text(given)})
    return view, decisions


def _proposal(content: dict) -> str:
    """The proposal in words, e.g. ``Give 500 mg every 12 h as a 1-h infusion (optimal)``."""
    a = content.get("action") or {}
    if "dose_mg" not in a or "interval_h" not in a:
        return ""
    text = f"Give {float(a['dose_mg']):.0f} mg every {float(a['interval_h']):g} h"
    if a.get("infusion_h"):
        text += f" as a {float(a['infusion_h']):g}-h infusion"
    if a.get("loading_mg"):
        text += f", after a loading dose of {float(a['loading_mg']):.0f} mg"
    return text + f" ({content.get('status', '')})"


def _action_text(action: dict) -> str:
    if "dose_mg" in action and "interval_h" in action:
        return f"{float(action['dose_mg']):.0f} mg q{float(action['interval_h']):g}h"
    return ", ".join(f"{k}={v}" for k, v in action.items())


def _explain(content: dict, lines: list[str]) -> list[str]:
    """Plain-language explanation: the target, the probabilities, what bound the choice, the key parameter."""
    out = []
    target = content.get("target") or {}
    if target:
        out.append(f"Target {target.get('name', '')} {target.get('low', '')}–{target.get('high', '')} "
                   f"{target.get('unit', '')}: predicted median {_num(target.get('median'))} "
                   f"(90 %: {_num(target.get('p05'))}–{_num(target.get('p95'))}).")
    probs = content.get("probabilities") or {}
    if probs:
        out.append("Probabilities: " + ", ".join(f"{k} {_num(v, 2)}" for k, v in probs.items()) + ".")
    for c in content.get("active_constraints") or ():
        out.append(f"Constraint in force: {c}.")
    sens = content.get("sensitivity") or {}
    name = sens.get("parameter") if isinstance(sens, dict) else None
    if name:
        text = (f"Most influential parameter: {name} (Spearman {_num(sens.get('spearman'), 2)} with the target "
                "metric)")
        low, high = sens.get("recommended_at_p05"), sens.get("recommended_at_p95")
        if low and high:
            text += (f"; were {name} at its 5th percentile ({_num(sens.get(f'{name}_p05'), 2)} {sens.get('unit', '')})"
                     f" the advice would be {low}, at its 95th ({_num(sens.get(f'{name}_p95'), 2)}) {high}")
        out.append(text + ".")
    return out or lines[1:4]


def _num(value, digits: int = 0) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{digits}f}" if math.isfinite(v) else "—"


def forecast_payload(view: PatientView) -> dict[str, Any]:
    """The JSON a page fetches to redraw its charts after a live event."""
    last = view.measurements[-1] if view.measurements else None
    message = (f"Updated: {len(view.measurements)} readings; last {view.output} {last.value:.3g} {view.unit} at "
               f"{last.time:.2f} h." if last else "Updated.")
    return {"revision": view.revision, "figure": view.figure, "posterior": view.posterior_figure,
            "alarms": view.alarms, "n_measurements": len(view.measurements), "message": message}


def audit_rows(stores, action: str | None = None, limit: int = 200) -> tuple[list[dict], int, list[str]]:
    """The newest *limit* audit entries (optionally of one action), the total count and the actions seen."""
    entries = list(stores.log.entries())
    actions = sorted({e.action for e in entries})
    chosen = [e for e in entries if not action or e.action == action]
    rows = []
    for e in reversed(chosen[-limit:]):
        payload = {k: v for k, v in e.payload.items() if k != "recommendation"}
        rows.append({"seq": e.seq, "time": str(e.time)[:19].replace("T", " "), "actor": e.actor,
                     "action": e.action, "patient": e.patient, "details": json.dumps(payload, sort_keys=True)[:300]})
    return rows, len(entries), actions


def trial_rows(stores) -> list[dict]:
    """The trial jobs (newest first): id, name, status, submitted."""
    from medtwin.io.service_tables import jobs_table

    with stores.engine.connect() as conn:
        jobs = conn.execute(sa.select(jobs_table).where(jobs_table.c.kind == "trial")
                            .order_by(jobs_table.c.created_at.desc())).all()
    out = []
    for j in jobs:
        try:
            name = json.loads(j.spec).get("name") or j.id
        except (ValueError, AttributeError):
            name = j.id
        out.append({"id": j.id, "name": name, "status": j.status, "created": j.created_at[:19], "result": j.result,
                    "error": j.error})
    return out


def forest_rows(result: dict) -> list[dict]:
    """Forest-plot rows of a stored trial result.

    Accepted shapes: ``overall`` (a mapping) plus ``subgroups`` / ``forest`` / ``strata`` (a list of mappings, or a
    mapping endpoint -> list, the first endpoint drawn).  A row needs ``estimate``, ``low``, ``high`` and either
    ``label`` or the trial engine's ``variable`` and ``stratum`` (:func:`medtwin.trials.analysis.stratum_effects`
    rows); ``n`` or ``n_treated`` + ``n_control`` is shown when present.  A result without such rows has no forest
    plot (empty list).
    """
    rows = []
    overall = result.get("overall")
    if isinstance(overall, dict):
        rows.append({"label": "overall", **overall})
    listed = result.get("subgroups") or result.get("forest") or result.get("strata") or ()
    if isinstance(listed, dict):
        listed = next(iter(listed.values()), ())
    rows.extend(r for r in listed if isinstance(r, dict))
    out = []
    for r in rows:
        if not {"estimate", "low", "high"} <= set(r):
            continue
        label = r.get("label") or (r.get("variable") if r.get("variable") == "overall"
                                   else f"{r.get('variable', '')} = {r.get('stratum', '')}")
        n = r.get("n")
        if n is None and r.get("n_treated") is not None and r.get("n_control") is not None:
            n = int(r["n_treated"]) + int(r["n_control"])
        out.append({"label": str(label), "estimate": float(r["estimate"]), "low": float(r["low"]),
                    "high": float(r["high"]), "n": n})
    return out
