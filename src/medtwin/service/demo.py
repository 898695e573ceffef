"""``medtwin serve --demo``: seed a working ward: demo users, the shipped vancomycin and ICU patients.

**Demo only.**  The users (login = role name, password ``<role>-demo``, printed in the console at start) exist
to try the ward; never start a server holding real patients with ``--demo``.

What is seeded (idempotent: a second start adds nothing; patients already present are left alone):

* users ``clinician``, ``pharmacist``, ``researcher``, ``auditor``, ``admin``;
* vancomycin patients (treatment twins, flagship 1): covariates from the demo's virtual ward
  (:func:`medtwin.scenarios.demo.virtual_ward`), true parameters from the shipped Goti 2018 population with its
  inter-individual variability, 1,000 mg q12h as 1-h infusions, a trough and a peak level with residual error
  (as :func:`medtwin.scenarios.demo.run_twin_demo`), stored as clinical records; each gets a recorded
  ``recommend`` run (AUC24 400–600 mg·h/L, the demo's dose constraints) made by the demo clinician;
* ICU patients (live twins, flagship 2): synthetic patients of :mod:`medtwin.scenarios.glucose_patients`
  (Bergman truth, so the ICING twin is misspecified as at a real bedside), ``icu_hours`` of 5-minute blood
  glucose under :func:`medtwin.scenarios.icu.icu_protocol_regimen`, stored as records and assimilated by the
  shipped ICU twin (:func:`medtwin.scenarios.icu.icu_twin_spec`);
* consents: every patient permits treatment and research, except ``vanco-3``, who withdrew research consent
  (so a researcher sees the refusal).

Examples
--------
>>> demo_password("auditor")
'auditor-demo'
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np

__all__ = ["DEMO_USERS", "demo_password", "seed_demo", "seed_patients"]

#: (login, role, display name); the password is ``<role>-demo`` (:func:`demo_password`).
DEMO_USERS = (("clinician", "clinician", "Dr. Clara Clinician"), ("pharmacist", "pharmacist", "Phil Pharmacist"),
              ("researcher", "researcher", "Rita Researcher"), ("auditor", "auditor", "Aude Auditor"),
              ("admin", "admin", "Adam Admin"))
#: The patient who withdrew research consent.
NO_RESEARCH = "vanco-3"
_ORIGIN = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)  # the demo patients' clock zero (fixed: reproducible)


def demo_password(role: str) -> str:
    """The demo password of a role (demo only)."""
    return f"{role}-demo"


def seed_demo(app, *, n_vanco: int = 3, n_icu: int = 2, icu_hours: float = 6.0, console=print) -> None:
    """Create the demo users and patients on the app's stores (idempotent), and print the demo logins."""
    if console is not None:
        console("medtwin demo ward: seeding the demo users and patients (first start: about a minute) ...")
    users = app.state.users
    for login, role, name in DEMO_USERS:
        if users.get(login) is None:
            users.create(login, demo_password(role), role, name)
    seed_patients(app, n_vanco=n_vanco, n_icu=n_icu, icu_hours=icu_hours)
    if console is not None:
        console("medtwin demo ward at /ward (DEMO ONLY - these accounts are for trying the ward, never for real "
                "patients):")
        for login, role, _ in DEMO_USERS:
            console(f"  user {login:<11} password {demo_password(role)}")


def _patients(app):
    services = app.state.services
    return services.patients, services.records


def _gate(app):
    from medtwin.governance.consent_store import ConsentGate

    return ConsentGate(app.state.stores.consents, "clinician", "treatment")


def _consent(stores, pid: str, actor: str) -> None:
    doc = {"resourceType": "Consent", "id": f"demo-consent-{pid}", "status": "active",
           "subject": {"reference": f"Patient/{pid}"}, "date": "2026-01-01", "decision": "permit"}
    stores.consents.add(doc, actor)
    if pid == NO_RESEARCH:
        stores.consents.withdraw(pid, "research", actor, _ORIGIN + timedelta(hours=1))


def _fhir_patient(pid: str, given: str, family: str, gender: str, birth: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"given": [given], "family": family}],
            "gender": gender, "birthDate": birth}


def seed_patients(app, *, n_vanco: int = 3, n_icu: int = 2, icu_hours: float = 6.0, seed: int = 2026) -> list[str]:
    """The demo patients not yet present, created; returns the ids created."""
    patients, _ = _patients(app)
    created = []
    for i in range(n_vanco):
        pid = f"vanco-{i + 1}"
        if patients.get(pid) is None:
            _seed_vancomycin(app, pid, i, seed)
            created.append(pid)
    for i in range(n_icu):
        pid = f"icu-{i + 1}"
        if patients.get(pid) is None:
            _seed_icu(app, pid, i, icu_hours, seed)
            created.append(pid)
    if created:
        logging.getLogger("medtwin.service").info("demo patients seeded", extra={"fields": {"patients": created}})
    return created


_NAMES = (("Ada", "Lovelace", "female", "1961-12-10"), ("Alan", "Turing", "male", "1952-06-23"),
          ("Grace", "Hopper", "female", "1946-12-09"), ("John", "Snow", "male", "1953-03-15"),
          ("Florence", "Nightingale", "female", "1960-05-12"), ("Ignaz", "Semmelweis", "male", "1958-07-01"))


def _seed_vancomycin(app, pid: str, i: int, seed: int) -> None:
    from medtwin import workflows
    from medtwin.control.dosing import DoseConstraints
    from medtwin.core.data import PatientData
    from medtwin.core.events import Regimen
    from medtwin.core.simulate import simulate
    from medtwin.io.population_file import load_population, shipped_population_path
    from medtwin.models import get_model
    from medtwin.scenarios.demo import virtual_ward

    stores = app.state.stores
    patients, records = _patients(app)
    given, family, gender, birth = _NAMES[i % len(_NAMES)]
    patients.create(_fhir_patient(pid, given, family, gender, birth), "admin", ward="ward 7 (infectious diseases)",
                    bed=str(i + 1), origin=_ORIGIN.isoformat())
    _consent(stores, pid, "admin")
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    ward = virtual_ward(i + 1, seed)
    covariates = {"CRCL": float(np.round(ward["CRCL"][i], 0)), "WT": float(np.round(ward["WT"][i], 0)), "DIAL": 0.0}
    rng = np.random.default_rng([seed, i])
    eta = rng.multivariate_normal(np.zeros(len(population.iiv)), population.omega)
    truth = {k: float(v) for k, v in population.individual_parameters(covariates, eta).items()}
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
    times, pre = np.array([35.5, 38.0]), np.array([True, False])
    model = get_model(population.model)
    f = np.asarray(simulate(model, truth, regimen, times, pre_dose=[pre]).output("C")).reshape(-1)
    levels = np.round(f + np.sqrt(population.residual.variance(f)) * rng.standard_normal(f.size), 1)
    rows = [{"kind": "infusion" if e.rate else "bolus", "name": "iv", "time_h": float(e.time), "value": float(e.rate or e.amount),
             "unit": "mg/h" if e.rate else "mg", "duration_h": float(e.amount / e.rate) if e.rate else None, "device": "pump",
             "source_id": f"demo-{pid}-dose-{k}"} for k, e in enumerate(regimen.expanded())]
    rows += [{"kind": "obs", "name": "C", "time_h": float(t), "value": float(v), "unit": "mg/L", "device": "lab",
              "source_id": f"demo-{pid}-level-{k}"} for k, (t, v) in enumerate(zip(times, levels))]
    records.add(pid, rows, "clinician")
    app.state.services.twins.create(pid, {"kind": "posterior", "population": "vancomycin_goti2018",
                                          "covariates": covariates}, access=_gate(app), stores=stores,
                                    actor="clinician")
    data = PatientData(regimen, times, levels, covariates, pre_dose=pre, patient=pid)
    constraints = DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=3000.0, max_daily_mg=4500.0,
                                  intervals_h=(8.0, 12.0, 24.0, 36.0, 48.0), max_rate_mg_per_h=1000.0)
    request = workflows.RecommendRequest(population, data, seed=seed, target={"kind": "auc24", "low": 400.0,
                                                                              "high": 600.0},
                                         constraints=constraints, objective="window", toxic_auc=800.0, epsilon=0.1,
                                         n_draws=500, purpose="treatment")
    workflows.run(request, stores, actor="clinician")


def _seed_icu(app, pid: str, i: int, hours: float, seed: int) -> None:
    from medtwin.models import get_model
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.scenarios.icu import icu_twin_spec, synthetic_stream

    stores = app.state.stores
    patients, records = _patients(app)
    given, family, gender, birth = _NAMES[(i + 3) % len(_NAMES)]
    patients.create(_fhir_patient(pid, given, family, gender, birth), "admin", ward="ICU", bed=str(i + 1),
                    origin=_ORIGIN.isoformat())
    _consent(stores, pid, "admin")
    total = max(int(np.ceil(hours)) + 24, 24)  # the protocol's inputs run a day past the seeded readings
    patient = sample_icu_patients(i + 1, hours=total, seed=seed)[i]
    synthetic = synthetic_stream(patient, hours=total, seed=seed + i)
    regimen = synthetic.stream.regimen
    states = get_model(icu_twin_spec()["model"]).states
    rows = []
    for k, e in enumerate(regimen.expanded()):
        duration = float(e.amount / e.rate) if e.rate else 0.0
        rows.append({"kind": "infusion" if e.rate else "bolus", "name": str(e.cmt), "time_h": float(e.time),
                     "value": float(e.rate if e.rate else e.amount),
                     "unit": states[e.cmt - 1].unit + ("/h" if e.rate else ""), "duration_h": duration or None,
                     "device": "pump", "source_id": f"demo-{pid}-input-{k}"})
    readings = [m for m in synthetic.stream.measurements if m.time <= hours + 1e-9]
    rows += [{"kind": "obs", "name": m.output, "time_h": float(m.time), "value": float(m.value), "unit": m.unit,
              "device": m.device, "source_id": f"demo-{pid}-{m.source_id}"} for m in readings]
    records.add(pid, rows, "clinician")
    app.state.services.twins.create(pid, {"kind": "live", "name": "icu_glucose"}, access=_gate(app),
                                    stores=stores, actor="clinician")
