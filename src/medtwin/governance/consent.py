"""Dynamic consent: FHIR Consent parsing and a pure policy decision point.

A FHIR ``Consent`` (R5, or R4B converted on import) is read into a frozen
:class:`ConsentPolicy`; :func:`decide` answers "may *actor* use *data_class*
of *patient* for *purpose* at *time*?" and :func:`require` raises
:class:`ConsentDenied` (a :class:`medtwin.errors.ConsentError`) when not.

Purpose codes (``Provision.purpose``; any listed coding is recognised, the
first one is written by :func:`to_fhir`):

=====================  =====================================================  ==============
medtwin purpose        system                                                 code
=====================  =====================================================  ==============
treatment              http://terminology.hl7.org/CodeSystem/v3-ActReason     TREAT
decision-support       http://terminology.hl7.org/CodeSystem/v3-ActReason     CAREMGT
research               http://terminology.hl7.org/CodeSystem/v3-ActReason     HRESCH, CLINTRCH
model-training         https://medtwin.org/fhir/CodeSystem/purpose            model-training
third-party-sharing    https://medtwin.org/fhir/CodeSystem/purpose            third-party-sharing
=====================  =====================================================  ==============

``decision-support`` is care-team decision support from the twin;
``research`` covers in-silico trials. Data classes use the system
``https://medtwin.org/fhir/CodeSystem/data-class`` with codes ``observations,
medications, demographics, genomics, imaging, all`` (R5 ``documentType``, R4B
``class``); FHIR resource-type codes (``Observation``, ``Patient`` ...) in
R5 ``resourceType`` / R4B ``class`` are mapped by :data:`RESOURCE_TYPE_CLASS`.

Semantics of :func:`decide`:

* only ``active`` consents of the patient count (``inactive`` = withdrawn,
  ``entered-in-error``, ``draft`` ... are ignored); outside ``Consent.period``
  a consent does not apply (the reason says expired / not yet valid);
* a consent without provisions applies ``decision`` to every request; top-level
  provisions carry ``decision`` (the R4B root ``provision.type``), each nested
  level is an exception that flips permit/deny; a nested provision's scope is
  within its parent's; the deepest matching provision wins, deny breaks ties;
* a permit provision restricted by ``data``, ``dataPeriod``, ``securityLabel``,
  ``code`` or ``expression``, or whose ``action`` lacks ``access``/``use``, is
  rejected on load: ignoring the restriction would widen the permit (medtwin
  requests have no action dimension; deny provisions may carry them, ignored);
* ``third-party-sharing`` is permitted only by a provision that lists that
  purpose *and* names the requesting actor in ``provision.actor``;
* of several applicable consents the most recent (``date``, then period start)
  wins, deny (then the id) breaks ties, so a newer deny (see :func:`withdraw`) supersedes;
* no applicable consent -> :data:`DEFAULT_POLICY`: ``treatment`` permitted
  (implied consent for direct care; checking that the actor is in the care
  team is authentication's job, or set ``DefaultPolicy.care_team``), every
  other purpose denied.

Examples
--------
>>> from datetime import datetime, timezone
>>> doc = {"resourceType": "Consent", "id": "c1", "status": "active",
...        "subject": {"reference": "Patient/p1"}, "date": "2026-01-01",
...        "decision": "permit",
...        "provision": [{"purpose": [{"system": PURPOSE_SYSTEMS["research"],
...                                    "code": "HRESCH"}]}]}
>>> policy = load_consent(doc)
>>> t = datetime(2026, 6, 1, tzinfo=timezone.utc)
>>> decide([policy], "p1", "Organization/lab", "research", "observations", t).permit
True
>>> decide([policy], "p1", "Organization/lab", "model-training", "observations", t).permit
False
>>> later = withdraw(policy, "research", t)
>>> decide([policy, later], "p1", "Organization/lab", "research", "observations", t).permit
False
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timezone
from pathlib import Path

from medtwin.errors import ConsentError, DataError
from medtwin.io.textfile import describe_value, load_mapping

__all__ = [
    "PURPOSES", "DATA_CLASSES", "STATUSES", "DECISIONS", "PURPOSE_CODES", "PURPOSE_SYSTEMS",
    "DATA_CLASS_SYSTEM", "RESOURCE_TYPE_CLASS", "Period", "Provision", "ConsentPolicy",
    "Decision", "DefaultPolicy", "DEFAULT_POLICY", "InvalidConsent", "ConsentDenied",
    "load_consent", "decide", "require", "withdraw", "to_fhir",
]

V3 = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MEDTWIN_PURPOSE = "https://medtwin.org/fhir/CodeSystem/purpose"
DATA_CLASS_SYSTEM = "https://medtwin.org/fhir/CodeSystem/data-class"
#: (system, code) -> medtwin purpose; the first entry per purpose is canonical.
PURPOSE_CODES: dict[tuple[str, str], str] = {
    (V3, "TREAT"): "treatment", (V3, "CAREMGT"): "decision-support", (V3, "HRESCH"): "research",
    (V3, "CLINTRCH"): "research", (MEDTWIN_PURPOSE, "model-training"): "model-training",
    (MEDTWIN_PURPOSE, "third-party-sharing"): "third-party-sharing"}
PURPOSES = ("treatment", "decision-support", "research", "model-training", "third-party-sharing")
PURPOSE_SYSTEMS = {p: next(s for (s, _), q in PURPOSE_CODES.items() if q == p) for p in PURPOSES}
_CANONICAL = {p: next(k for k, q in PURPOSE_CODES.items() if q == p) for p in PURPOSES}
DATA_CLASSES = ("observations", "medications", "demographics", "genomics", "imaging", "all")
RESOURCE_TYPE_CLASS = {
    "Observation": "observations", "MedicationAdministration": "medications",
    "MedicationRequest": "medications", "MedicationStatement": "medications",
    "Patient": "demographics", "MolecularSequence": "genomics", "GenomicStudy": "genomics",
    "ImagingStudy": "imaging"}
STATUSES = ("draft", "active", "inactive", "not-done", "entered-in-error", "unknown")
R4B_STATUSES = {"draft": "draft", "proposed": "draft", "active": "active", "rejected": "not-done",
                "inactive": "inactive", "entered-in-error": "entered-in-error"}
DECISIONS = ("permit", "deny")
_UNSUPPORTED = ("data", "dataPeriod", "securityLabel", "code", "expression")


class InvalidConsent(DataError):
    """A Consent resource is invalid; ``path`` names the element, ``allowed`` the values."""

    def __init__(self, path: str, message: str, allowed: Sequence[str] = ()):
        self.path, self.allowed = path, tuple(allowed)
        extra = f" (allowed: {' | '.join(self.allowed)})" if self.allowed else ""
        super().__init__(f"{path}: {message}{extra}")


@dataclass(frozen=True)
class Period:
    """Closed time interval; ``None`` ends are open. Times are timezone-aware (UTC if naive)."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self):
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _utc(getattr(self, name)))

    def where(self, t: datetime) -> str | None:
        """``None`` if *t* lies in the period, else ``"expired"`` / ``"not yet valid"``."""
        if self.start is not None and t < self.start:
            return "not yet valid"
        if self.end is not None and t > self.end:
            return "expired"
        return None


@dataclass(frozen=True)
class Provision:
    """One provision; ``None`` criteria match anything. Nested ``provisions`` are exceptions."""

    purposes: frozenset[str] | None = None
    data_classes: frozenset[str] | None = None
    actors: frozenset[str] | None = None
    period: Period | None = None
    provisions: tuple[Provision, ...] = ()

    def __post_init__(self):
        for name in ("purposes", "data_classes", "actors"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise DataError(f"Provision.{name} is empty (use None for 'any')")
        if self.data_classes is not None and "all" in self.data_classes:
            object.__setattr__(self, "data_classes", None)
        if self.period == Period():
            object.__setattr__(self, "period", None)
        object.__setattr__(self, "provisions", tuple(self.provisions))


@dataclass(frozen=True)
class ConsentPolicy:
    """A patient's consent, independent of FHIR version (see module docstring)."""

    id: str
    patient: str
    status: str
    decision: str
    date: date | None = None
    period: Period | None = None
    provisions: tuple[Provision, ...] = ()

    def __post_init__(self):
        _check(self.status, STATUSES, "status")
        _check(self.decision, DECISIONS, "decision")
        if self.period == Period():
            object.__setattr__(self, "period", None)
        object.__setattr__(self, "provisions", tuple(self.provisions))


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`; the request fields are there for the audit log."""

    permit: bool
    reason: str
    consent_id: str | None = None
    patient: str | None = None
    actor: str | None = None
    purpose: str | None = None
    data_class: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class DefaultPolicy:
    """What applies when no consent on file speaks to a request.

    ``permitted`` purposes are allowed; when ``care_team`` is given, only those
    actors get them.
    """

    permitted: frozenset[str] = frozenset({"treatment"})
    care_team: frozenset[str] | None = None
    name: str = "medtwin-default-v1"


DEFAULT_POLICY = DefaultPolicy()


class ConsentDenied(ConsentError):
    """Access denied; carries the :class:`Decision` (``reason``, ``consent_id``)."""

    def __init__(self, decision: Decision):
        self.decision, self.reason, self.consent_id = decision, decision.reason, decision.consent_id
        super().__init__(f"consent denied ({decision.consent_id or 'no consent'}): {decision.reason}")


# ----------------------------------------------------------------------- parsing
def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _instant(s: str, path: str, *, end: bool = False) -> datetime:
    try:
        if "T" in s:
            return _utc(datetime.fromisoformat(s.replace("Z", "+00:00")))
        parts = [int(x) for x in s.split("-")]
        y, m, d = (parts + [0, 0])[:3]
        if end:
            if not m:
                m = 12
            if not d:
                nxt = date(y + (m == 12), m % 12 + 1, 1)
                d = (nxt - date.resolution).day
            return datetime.combine(date(y, m, d), dtime.max, timezone.utc)
        return datetime(y, m or 1, d or 1, tzinfo=timezone.utc)
    except (ValueError, TypeError) as exc:
        raise InvalidConsent(path, f"not a FHIR dateTime: {s!r}") from exc


def _period(d: dict | None, path: str) -> Period | None:
    if not d:
        return None
    if not isinstance(d, dict):
        raise InvalidConsent(path, f"expected an object with start and/or end, got {describe_value(d)}")
    start = _instant(d["start"], path + ".start") if d.get("start") else None
    end = _instant(d["end"], path + ".end", end=True) if d.get("end") else None
    if start is not None and end is not None and end < start:
        raise InvalidConsent(path + ".end", f"the consent ends ({d['end']}) before it starts ({d['start']})")
    return Period(start, end)


def _purposes(codings: list | None, path: str) -> frozenset[str] | None:
    if not codings:
        return None
    out = set()
    for i, c in enumerate(codings):
        key = (c.get("system", ""), c.get("code", ""))
        if key not in PURPOSE_CODES:
            allowed = [f"{s}|{k}" for s, k in PURPOSE_CODES]
            raise InvalidConsent(f"{path}[{i}]", f"unknown purpose {key[0]}|{key[1]}", allowed)
        out.add(PURPOSE_CODES[key])
    return frozenset(out)


def _classes(codings: list, path: str) -> frozenset[str] | None:
    if not codings:
        return None
    out = set()
    for i, c in enumerate(codings):
        code = c.get("code", "")
        if c.get("system") == DATA_CLASS_SYSTEM and code in DATA_CLASSES:
            out.add(code)
        elif c.get("system") != DATA_CLASS_SYSTEM and code in RESOURCE_TYPE_CLASS:
            out.add(RESOURCE_TYPE_CLASS[code])
        else:
            allowed = [f"{DATA_CLASS_SYSTEM}|{k}" for k in DATA_CLASSES] + sorted(RESOURCE_TYPE_CLASS)
            raise InvalidConsent(f"{path}[{i}]", f"unknown data class {c.get('system')}|{code}", allowed)
    return frozenset(out)


def _provision(d: dict, path: str, r4b: bool, parent: str) -> tuple[Provision, str]:
    own = parent
    if r4b and d.get("type") is not None:
        if d["type"] not in DECISIONS:
            raise InvalidConsent(path + ".type", f"{d['type']!r} is not a decision", DECISIONS)
        own = d["type"]
    actors = [a.get("reference", {}).get("reference") for a in d.get("actor") or []]
    if any(a is None for a in actors):
        raise InvalidConsent(path + ".actor", "every actor needs reference.reference")
    if own == "permit":  # ignoring a restriction would widen a permit: refuse instead
        for key in _UNSUPPORTED:
            if d.get(key):
                raise InvalidConsent(f"{path}.{key}", "not supported on a permit provision")
        acts = {c.get("code") for a in d.get("action") or [] for c in a.get("coding") or []}
        if d.get("action") and not acts & {"access", "use"}:
            raise InvalidConsent(f"{path}.action", "a permit must include access or use", ("access", "use"))
    keys = ("class",) if r4b else ("documentType", "resourceType")
    found = [_classes(d.get(k) or [], f"{path}.{k}") for k in keys]
    classes = None if all(f is None for f in found) else frozenset().union(*(f for f in found if f))
    children = []
    for i, c in enumerate(d.get("provision") or []):
        cpath = f"{path}.provision[{i}]"
        flipped = "deny" if own == "permit" else "permit"
        child, cdec = _provision(c, cpath, r4b, flipped)
        if cdec != flipped:
            raise InvalidConsent(cpath + ".type", f"nested provisions are exceptions and must be the "
                                 f"opposite of their parent ({own})", (flipped,))
        children.append(child)
    return Provision(_purposes(d.get("purpose"), path + ".purpose"), classes,
                     frozenset(actors) if actors else None, _period(d.get("period"), path + ".period"),
                     tuple(children)), own


def _ref_id(ref: dict | None, path: str) -> str:
    r = (ref or {}).get("reference")
    if not r:
        raise InvalidConsent(path, "the patient reference is required")
    return r.split("/")[-1]


def load_consent(resource: dict | str | Path) -> ConsentPolicy:
    """Read a FHIR R5 (or R4B) Consent into a :class:`ConsentPolicy`.

    Parameters
    ----------
    resource : dict, str or Path
        The resource as a dict, JSON text, or a path to a JSON file.

    Returns
    -------
    ConsentPolicy

    Raises
    ------
    InvalidConsent
        (a :class:`~medtwin.errors.DataError`) naming the element path and the
        allowed values when the resource fails fhir.resources validation or the
        required bindings (status, decision, purpose, data class) checked here.
    """
    if isinstance(resource, Path) or (isinstance(resource, str) and resource.lstrip()[:1] not in ("{", "[")):
        resource = load_mapping(resource, what="Consent file", fmt="json")
    if isinstance(resource, str):
        try:
            resource = json.loads(resource)
        except json.JSONDecodeError as exc:
            raise InvalidConsent("Consent", f"not JSON: {exc}") from exc
    if not isinstance(resource, dict):
        raise InvalidConsent("Consent", f"expected a JSON object (a FHIR Consent resource), got "
                                        f"{describe_value(resource)}")
    doc = dict(resource)
    if doc.get("resourceType") != "Consent":
        raise InvalidConsent("Consent.resourceType", f"expected 'Consent', got {doc.get('resourceType')!r}")
    r4b = ("decision" not in doc and "subject" not in doc
           and ("patient" in doc or "scope" in doc or isinstance(doc.get("provision"), dict)))
    if r4b:
        from fhir.resources.R4B.consent import Consent as Model
    else:
        from fhir.resources.consent import Consent as Model
    try:
        Model.model_validate(doc)
    except Exception as exc:  # pydantic.ValidationError; wrapped so callers see DataError
        raise InvalidConsent("Consent", f"invalid FHIR {'R4B' if r4b else 'R5'} Consent: {exc}") from exc
    status = doc.get("status")
    if r4b:
        if status not in R4B_STATUSES:
            raise InvalidConsent("Consent.status", f"{status!r} is not a consent state", list(R4B_STATUSES))
        status = R4B_STATUSES[status]
        root = doc.get("provision")
        if not root or root.get("type") not in DECISIONS:
            raise InvalidConsent("Consent.provision.type", f"{(root or {}).get('type')!r} is not a decision",
                                 DECISIONS)
        decision = root["type"]
        prov, _ = _provision(root, "Consent.provision", True, decision)
        provisions = (prov,)
        patient = _ref_id(doc.get("patient"), "Consent.patient")
        when = doc.get("dateTime")
        day = _instant(when, "Consent.dateTime").date() if when else None
        period = None
    else:
        if status not in STATUSES:
            raise InvalidConsent("Consent.status", f"{status!r} is not a consent state", STATUSES)
        decision = doc.get("decision")
        if decision not in DECISIONS:
            raise InvalidConsent("Consent.decision", f"{decision!r} is not a decision", DECISIONS)
        provisions = tuple(_provision(p, f"Consent.provision[{i}]", False, decision)[0]
                           for i, p in enumerate(doc.get("provision") or []))
        patient = _ref_id(doc.get("subject"), "Consent.subject")
        day = _instant(doc["date"], "Consent.date").date() if doc.get("date") else None
        period = _period(doc.get("period"), "Consent.period")  # (a period ending before it starts is refused)
    return ConsentPolicy(doc.get("id") or "", patient, status, decision, day, period, provisions)


# ----------------------------------------------------------------------- writing
def _period_fhir(p: Period) -> dict:
    return {k: v.isoformat() for k, v in (("start", p.start), ("end", p.end)) if v is not None}


def _provision_fhir(p: Provision) -> dict:
    d: dict = {}
    if p.period:
        d["period"] = _period_fhir(p.period)
    if p.actors:
        d["actor"] = [{"reference": {"reference": a}} for a in sorted(p.actors)]
    if p.purposes:
        d["purpose"] = [{"system": _CANONICAL[x][0], "code": _CANONICAL[x][1]} for x in sorted(p.purposes)]
    if p.data_classes:
        d["documentType"] = [{"system": DATA_CLASS_SYSTEM, "code": c} for c in sorted(p.data_classes)]
    if p.provisions:
        d["provision"] = [_provision_fhir(c) for c in p.provisions]
    return d


def to_fhir(policy: ConsentPolicy) -> dict:
    """Write *policy* as a FHIR R5 Consent dict; ``load_consent(to_fhir(p)) == p``."""
    doc: dict = {"resourceType": "Consent", "status": policy.status,
                 "subject": {"reference": f"Patient/{policy.patient}"}, "decision": policy.decision}
    if policy.id:
        doc["id"] = policy.id
    if policy.date:
        doc["date"] = policy.date.isoformat()
    if policy.period:
        doc["period"] = _period_fhir(policy.period)
    if policy.provisions:
        doc["provision"] = [_provision_fhir(p) for p in policy.provisions]
    return doc


def withdraw(policy: ConsentPolicy, purpose: str, time: datetime) -> ConsentPolicy:
    """A new active consent denying *purpose* from *time* on, superseding *policy*.

    Pure: *policy* is unchanged; store both and pass both to :func:`decide`.
    """
    _check(purpose, PURPOSES, "purpose")
    t = _utc(time)
    return ConsentPolicy(f"{policy.id}-withdraw-{purpose}", policy.patient, "active", "deny",
                         t.date(), Period(start=t), (Provision(purposes=frozenset({purpose})),))


# ----------------------------------------------------------------------- deciding
def _check(value: str, allowed: Sequence[str], name: str) -> None:
    if value not in allowed:
        raise DataError(f"{name} {value!r} is not one of {' | '.join(allowed)}")


def _matches(p: Provision, decision: str, actor: str, purpose: str, data_class: str, t: datetime) -> bool:
    if p.purposes is not None and purpose not in p.purposes:
        return False
    if p.actors is not None and actor not in p.actors:
        return False
    if data_class == "all":  # a permit must cover every class; any deny restriction bites
        if p.data_classes is not None and decision == "permit":
            return False
    elif p.data_classes is not None and data_class not in p.data_classes:
        return False
    return p.period is None or p.period.where(t) is None


def _best(policy: ConsentPolicy, actor: str, purpose: str, data_class: str, t: datetime):
    """Deepest matching (decision, depth, path) of one consent, or None; deny breaks ties."""
    flip = {"permit": "deny", "deny": "permit"}
    found = []

    def walk(p: Provision, decision: str, depth: int, path: str, named: bool, listed: bool) -> None:
        if not _matches(p, decision, actor, purpose, data_class, t):
            return
        named, listed = named or bool(p.actors), listed or purpose in (p.purposes or ())
        # third-party sharing needs the purpose listed and the actor named (here or above)
        if purpose != "third-party-sharing" or decision == "deny" or (named and listed):
            found.append((decision, depth, path))
        for i, c in enumerate(p.provisions):
            walk(c, flip[decision], depth + 1, f"{path}.provision[{i}]", named, listed)

    for i, p in enumerate(policy.provisions):
        walk(p, policy.decision, 1, f"Consent.provision[{i}]", False, False)
    if not policy.provisions:  # no provision: the decision applies to everything
        walk(Provision(), policy.decision, 0, "Consent.decision", False, False)
    if not found:
        return None
    return max(found, key=lambda f: (f[1], f[0] == "deny"))


def decide(consents: Sequence[ConsentPolicy], patient: str, actor: str, purpose: str,
           data_class: str, time: datetime, default_policy: DefaultPolicy = DEFAULT_POLICY) -> Decision:
    """Policy decision point: may *actor* use *data_class* of *patient* for *purpose* at *time*?

    Parameters
    ----------
    consents : sequence of ConsentPolicy
        Consents on file (any patient; others are skipped).
    patient : str
        Patient id (``"p1"`` or ``"Patient/p1"``).
    actor : str
        FHIR reference of who asks (``"Practitioner/x"``, ``"Organization/cloud"``).
    purpose : str
        One of :data:`PURPOSES`.
    data_class : str
        One of :data:`DATA_CLASSES`.
    time : datetime
        When the access happens (naive = UTC).
    default_policy : DefaultPolicy
        Applied when no consent speaks to the request.

    Returns
    -------
    Decision
    """
    _check(purpose, PURPOSES, "purpose")
    _check(data_class, DATA_CLASSES, "data_class")
    pid, t = patient.split("/")[-1], _utc(time)
    req = dict(patient=pid, actor=actor, purpose=purpose, data_class=data_class, time=t)
    notes, applicable = [], []
    for c in consents:
        if c.patient != pid:
            continue
        if c.status != "active":
            notes.append(f"consent {c.id} is {c.status}" + (" (withdrawn)" if c.status == "inactive" else "")
                         + ", ignored")
            continue
        where = c.period.where(t) if c.period else None
        if where:
            edge = c.period.end if where == "expired" else c.period.start
            notes.append(f"consent {c.id} {where} ({'ended' if where == 'expired' else 'starts'} "
                         f"{edge.isoformat()})")
            continue
        best = _best(c, actor, purpose, data_class, t)
        if best is None:
            notes.append(f"consent {c.id} has no provision for this request")
            continue
        start = c.period.start if c.period and c.period.start else datetime.min.replace(tzinfo=timezone.utc)
        applicable.append(((c.date or date.min, start, best[0] == "deny", c.id), c, best))
    if applicable:
        _, c, (dec, _, path) = max(applicable, key=lambda a: a[0])
        reason = f"consent {c.id} {path} {dec}s {purpose} of {data_class} by {actor}"
        if len(applicable) > 1:
            reason += f" (most recent of {len(applicable)} applicable consents)"
        return Decision(dec == "permit", reason, c.id, **req)
    ok = purpose in default_policy.permitted and (default_policy.care_team is None
                                                  or actor in default_policy.care_team)
    allowed = ", ".join(sorted(default_policy.permitted)) or "nothing"
    reason = (f"no applicable consent for patient {pid}; default policy {default_policy.name} "
              f"{'permits' if ok else 'denies'} {purpose} (it permits only: {allowed})")
    if notes:
        reason += "; " + "; ".join(sorted(notes))
    return Decision(ok, reason, None, **req)


def require(consents: Sequence[ConsentPolicy], patient: str, actor: str, purpose: str,
            data_class: str, time: datetime, default_policy: DefaultPolicy = DEFAULT_POLICY,
            on_decision: Callable[[Decision], None] | None = None) -> Decision:
    """:func:`decide`, calling ``on_decision`` (e.g. the audit log) with every decision.

    Returns the :class:`Decision` when permitted; raises :class:`ConsentDenied`
    (a :class:`~medtwin.errors.ConsentError`) with its reason and consent id otherwise.
    """
    d = decide(consents, patient, actor, purpose, data_class, time, default_policy)
    if on_decision is not None:
        on_decision(d)
    if not d.permit:
        raise ConsentDenied(d)
    return d
