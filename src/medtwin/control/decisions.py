"""Clinician in the loop: decisions on the twin's recommendations, and what recurring overrides teach (pure).

A clinician *accepts*, *modifies* or *overrides* a
:class:`~medtwin.control.recommendation.Recommendation`; :func:`decide`
returns the :class:`Decision` value, which keeps what the twin proposed next
to what was given, why, by whom and when.  Storing it with signed provenance
is :class:`medtwin.governance.decision_store.DecisionStore`'s job; this module
reads no clock, file or database.

Choices
-------
``accept``
    The proposal is given as it is (``given == proposed``; a reason is optional).
``modify``
    The proposal is adjusted (e.g. rounded, or a dose lowered) but still
    followed: the twin's advice still governs dosing.  ``given`` must differ
    from ``proposed``; a reason is required.
``override``
    The proposal is set aside for the clinician's own plan; a reason is required.

Overrides as information: :func:`override_analysis`
----------------------------------------------------
For every subgroup (the values of the ``by`` subgroup labels) the analysis
works on ``r = log(given / proposed)`` of one numeric action field
(``quantity``, default ``dose_mg``; for a sequence, as in MPC, its first
element, the one applied).  An accepted decision has ``r = 0``.  Decisions
whose proposed or given quantity is missing, non-positive or not finite (a
withheld dose, a switch of drug) are counted (``n_excluded``) but carry no
ratio.

*Unit of analysis.*  Decisions about one patient are not independent (the
same clinician, the same reasoning, again and again), and a pattern carried
by one patient is not *recurring*.  With ``cluster="patient"`` (default)
the ratios are first averaged per patient and the tests run over patients;
``cluster="decision"`` treats every decision as independent.

*Tests.*  Per subgroup with at least ``min_n`` units: a one-sample t-test of
mean ``r`` = 0 (``p_t``) and an exact two-sided sign test over the units with
``r != 0`` (``p_sign``; robust to heavy tails and to a few extreme
overrides).  The subgroup's p-value is ``max(p_t, p_sign)``: both must
reject (an intersection-union test, still of level ``alpha``); the exact
sign test needs at least 6 units on one side to reach p < 0.05 (5 of 5 give
0.0625), whatever ``min_n``.  The p-values
of all tested subgroups are Holm-adjusted (family-wise error rate ``alpha``
across the subgroups of one report).

*Rule* (a **recurring systematic override**): a subgroup is flagged
``systematic`` when its Holm-adjusted p-value is below ``alpha`` **and** the
geometric-mean ratio differs from 1 by at least 10 % (``|mean r| >=
log(1.1)``, :data:`MIN_EFFECT`): significant and clinically relevant; a
subgroup below ``min_n`` units is ``insufficient-data``, any other ``none``.
The threshold keeps consistent small deviations (rounding to a vial size)
from being flagged.

Feedback: :class:`DiscrepancyTerm`
----------------------------------
An adjustable model-discrepancy term built from a report: for subgroup ``g``
with ``n`` units and mean log ratio ``m``, the factor is ``exp(w m)`` with the
shrinkage weight ``w = n / (n + k)``: with few decisions the term stays near
1, with many it approaches the clinicians' geometric-mean ratio.  ``k``
(default 10: ten units give half weight) is adjustable; ``k = 0`` switches the
shrinkage off (``w = 1``), ``k = inf`` (or :meth:`DiscrepancyTerm.none`)
switches the term off.  By default only ``systematic`` subgroups get a term.

It multiplies the *proposed* quantity (the dose), not the target.  Why: the
overrides measure given/proposed dose ratios directly, so a dose factor
needs no model; for linear PK (exposure proportional to dose) it is exactly
a shift of the exposure target by the same factor, and for nonlinear models
a target shift would need the model again.  The adjusted dose is a
suggestion outside the optimiser: a recommender applying it must re-check
its safety constraints (and round to what can be given).

Data under the twin's advice: :func:`mark_under_advice`
--------------------------------------------------------
Measurements taken while an *accepted or modified* decision was in force get
``under_advice=True``: a modified proposal is still twin-guided, so data
under it are not independent of the twin (the feedback-loop alarm and
``learning_weights`` in :mod:`medtwin.assimilate.alarms` use the flag).
Data under an override are the clinician's own policy and stay unmarked.

Examples
--------
>>> from medtwin.control.recommendation import Recommendation
>>> rec = Recommendation(kind="regimen", action={"dose_mg": 1250.0, "interval_h": 12.0}, status="optimal",
...                      target={"name": "AUC24", "low": 400.0, "high": 600.0})
>>> d = decide(rec, "modify", given={"dose_mg": 1000.0, "interval_h": 12.0}, reason="rising creatinine",
...            patient="p1", clinician="dr.who", time=36.0, subgroup={"renal": "CrCl<30"})
>>> d.choice, d.given["dose_mg"], d.twin_guided
('modify', 1000.0, True)
>>> round(d.log_ratio("dose_mg"), 4)
-0.2231
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from medtwin.errors import DataError

__all__ = ["CHOICES", "MIN_EFFECT", "Decision", "DiscrepancyTerm", "decide", "mark_under_advice",
           "override_analysis", "recommendation_content", "recommendation_id"]

#: What a clinician can do with a recommendation.
CHOICES = ("accept", "modify", "override")
#: Smallest |mean log(given/proposed)| flagged as systematic: a 10 % geometric-mean difference.
MIN_EFFECT = math.log(1.1)
#: Label of a subgroup key a decision does not carry.
MISSING = "<missing>"


# ------------------------------------------------------------------------------ plain values
def _plain(value: Any, where: str) -> Any:
    """JSON-ready copy: numpy scalars -> Python numbers, tuples/arrays -> lists; anything else refused.

    ``where`` names the value in error messages (paths of nested items are built only on error).
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value)):
        return value
    if kind is dict or isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise DataError(f"{where}: keys must be text, got {k!r}")
            out[k] = _plain_item(v, where, k)
        return out
    if kind is list or kind is tuple or isinstance(value, (list, tuple, np.ndarray)):
        return [_plain_item(v, where, i) for i, v in enumerate(value.tolist() if kind is np.ndarray else value)]
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        raise DataError(f"{where}: {value!r} is not a finite number")
    raise DataError(f"{where}: {type(value).__name__} cannot be recorded (numbers, text, lists, mappings only)")


def _plain_item(value: Any, where: str, key) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value)):
        return value
    return _plain(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")


def recommendation_content(recommendation) -> dict:
    """What a decision records of a recommendation: its plain fields and :meth:`summary` (no bands, no regimen).

    Examples
    --------
    >>> from medtwin.control.recommendation import Recommendation
    >>> r = Recommendation(kind="regimen", action={"dose_mg": 750}, status="feasible", target={})
    >>> c = recommendation_content(r)
    >>> c["action"], c["summary"]
    ({'dose_mg': 750}, 'recommended (feasible): dose_mg=750')
    """
    r = recommendation
    return _plain({"kind": r.kind, "action": dict(r.action), "status": r.status, "target": dict(r.target),
                   "constraints": dict(r.constraints), "active_constraints": list(r.active_constraints),
                   "probabilities": dict(r.probabilities), "sensitivity": dict(r.sensitivity),
                   "runner_ups": [dict(o) for o in r.runner_ups], "message": r.message,
                   "summary": r.summary()}, "recommendation")


def recommendation_id(recommendation) -> str:
    """``"sha256:..."`` of :func:`recommendation_content` (sorted-key JSON).

    Hashed here with :mod:`hashlib` rather than with
    :func:`medtwin.governance.canonical.digest` because ``control`` must not
    import ``governance`` (imports point inward); the store digests the same
    content canonically in the signed provenance record.
    """
    text = json.dumps(recommendation_content(recommendation), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------ the decision
@dataclass(frozen=True)
class Decision:
    """A clinician's decision on one recommendation (build it with :func:`decide`).

    Attributes
    ----------
    patient : str
        Patient id.
    recommendation_id : str
        :func:`recommendation_id` of the recommendation decided on.
    proposed : dict
        The twin's proposed action, clinical units (e.g. ``{"dose_mg": 1250.0, "interval_h": 12.0}``).
    choice : {"accept", "modify", "override"}
    given : dict
        The action given, same units; equal to ``proposed`` for ``accept``.
    reason : str
        Why (required, non-empty, for ``modify`` and ``override``).
    clinician : str
        Who decided.
    time : float
        When, h on the patient's stream clock (the clock of the aligned measurements).
    timestamp : str or None
        Wall-clock time of the decision, ISO 8601 UTC; None: stamped by the store when recorded.
    subgroup : dict of str to str
        Subgroup labels for the override analysis, e.g. ``{"renal": "CrCl<30", "unit": "ICU"}``.
    in_force_until : float or None
        Time (h, same clock) until which the decision governs dosing; None: until the next decision.
    """

    patient: str
    recommendation_id: str
    proposed: dict
    choice: str
    given: dict
    reason: str
    clinician: str
    time: float
    timestamp: str | None = None
    subgroup: dict = field(default_factory=dict)
    in_force_until: float | None = None

    def __post_init__(self):
        for name in ("patient", "recommendation_id", "clinician"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"decision: {name} must be a non-empty string, got {value!r}")
        if self.choice not in CHOICES:
            raise DataError(f"decision: choice must be one of {CHOICES}, not {self.choice!r}")
        for name in ("proposed", "given", "subgroup"):
            if not isinstance(getattr(self, name), Mapping):
                raise DataError(f"decision: {name} must be a mapping, got {type(getattr(self, name)).__name__}")
            object.__setattr__(self, name, _plain(dict(getattr(self, name)), f"decision.{name}"))
        if any(not isinstance(v, str) for v in self.subgroup.values()):
            raise DataError(f"decision: subgroup labels must be text, got {self.subgroup!r}")
        if not isinstance(self.reason, str):
            raise DataError(f"decision: reason must be text, got {self.reason!r}")
        if self.choice == "accept" and self.given != self.proposed:
            raise DataError("decision: an accepted recommendation is given as proposed "
                            f"({self.proposed}), not {self.given}; use 'modify' or 'override'")
        if self.choice != "accept" and not self.reason.strip():
            raise DataError(f"decision: a reason is required to {self.choice} a recommendation")
        if self.choice == "modify" and self.given == self.proposed:
            raise DataError("decision: 'modify' needs a given action that differs from the proposal; "
                            "use 'accept' to give it as proposed")
        object.__setattr__(self, "time", _finite(self.time, "time"))
        if self.in_force_until is not None:
            until = _finite(self.in_force_until, "in_force_until")
            if until <= self.time:
                raise DataError(f"decision: in_force_until ({until:g} h) must be after the decision ({self.time:g} h)")
            object.__setattr__(self, "in_force_until", until)
        if self.timestamp is not None and not isinstance(self.timestamp, str):
            raise DataError(f"decision: timestamp must be ISO 8601 text or None, got {self.timestamp!r}")

    @property
    def twin_guided(self) -> bool:
        """True for ``accept`` and ``modify``: the twin's advice governs dosing while the decision is in force."""
        return self.choice in ("accept", "modify")

    def log_ratio(self, quantity: str = "dose_mg") -> float:
        """``log(given / proposed)`` of one numeric action field; NaN when either is missing or not positive."""
        return _log_ratio(self, quantity)

    def as_dict(self) -> dict:
        """All fields as JSON-ready data (inverse: :meth:`from_dict`)."""
        return {"patient": self.patient, "recommendation_id": self.recommendation_id, "proposed": self.proposed,
                "choice": self.choice, "given": self.given, "reason": self.reason, "clinician": self.clinician,
                "time": self.time, "timestamp": self.timestamp, "subgroup": self.subgroup,
                "in_force_until": self.in_force_until}

    @classmethod
    def from_dict(cls, data: Mapping) -> Decision:
        return cls(**dict(data))


def _finite(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"decision: {name} must be a number of hours, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"decision: {name} must be finite, got {value!r}")
    return number


def decide(recommendation, choice: str, *, given: Mapping | None = None, reason: str = "", patient: str,
           clinician: str, time: float, subgroup: Mapping[str, str] | None = None,
           in_force_until: float | None = None, timestamp: str | None = None) -> Decision:
    """Record what the clinician did with a recommendation (pure: no clock is read).

    Parameters
    ----------
    recommendation : Recommendation
        What the twin proposed.
    choice : {"accept", "modify", "override"}
    given : mapping, optional
        The action given, clinical units. ``accept``: omit it (or pass the proposal); ``modify`` and
        ``override``: required.
    reason : str
        Required, non-empty, for ``modify`` and ``override``.
    patient, clinician : str
        Whose dosing, decided by whom.
    time : float
        h on the patient's stream clock.
    subgroup : mapping of str to str, optional
        Subgroup labels for :func:`override_analysis`.
    in_force_until : float, optional
        h; default: the decision governs until the next one.
    timestamp : str, optional
        ISO 8601 UTC wall-clock time; default: stamped when stored.

    Returns
    -------
    Decision

    Raises
    ------
    DataError
        Unknown choice, missing reason or given action, an accept with another action, a modify equal to the
        proposal, a non-finite time.

    Examples
    --------
    >>> from medtwin.control.recommendation import Recommendation
    >>> rec = Recommendation(kind="regimen", action={"dose_mg": 1000.0}, status="optimal", target={})
    >>> decide(rec, "accept", patient="p1", clinician="dr.who", time=12.0).given
    {'dose_mg': 1000.0}
    >>> decide(rec, "override", given={"dose_mg": 500.0}, patient="p1", clinician="dr.who", time=12.0)
    Traceback (most recent call last):
    ...
    medtwin.errors.DataError: decision: a reason is required to override a recommendation
    """
    proposed = dict(recommendation.action)
    if given is None:
        if choice in ("modify", "override"):
            raise DataError(f"decision: {choice!r} needs the given action (given=...)")
        given = proposed
    return Decision(patient=patient, recommendation_id=recommendation_id(recommendation), proposed=proposed,
                    choice=choice, given=dict(given), reason=reason, clinician=clinician, time=time,
                    timestamp=timestamp, subgroup=dict(subgroup or {}), in_force_until=in_force_until)


# ------------------------------------------------------------------------------ override analysis
def _amount(action: Mapping, quantity: str) -> float:
    value = action.get(quantity)
    if isinstance(value, list):  # a sequence of inputs (MPC): the first is the one applied
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _log_ratio(decision: Decision, quantity: str) -> float:
    if decision.choice == "accept":
        return 0.0 if _amount(decision.proposed, quantity) > 0 else math.nan
    p, g = _amount(decision.proposed, quantity), _amount(decision.given, quantity)
    if not (p > 0 and g > 0 and math.isfinite(p) and math.isfinite(g)):
        return math.nan
    return math.log(g / p)


def _sign_p(n_lower: int, n_higher: int) -> float:
    """Exact two-sided sign test (binomial, p = 1/2) over the non-zero differences."""
    m = n_lower + n_higher
    if m == 0:
        return 1.0
    k = min(n_lower, n_higher)
    return float(min(1.0, 2.0 * special.bdtr(k, m, 0.5)))


def _t_test(r: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """(t, two-sided p, CI low, CI high) of mean r = 0, Student t with n - 1 degrees of freedom."""
    n, mean = r.size, float(r.mean())
    if n < 2:
        return math.nan, math.nan, math.nan, math.nan
    se = float(r.std(ddof=1)) / math.sqrt(n)
    if se <= 1e-12 * max(1.0, abs(mean)):  # identical ratios: no spread to test against
        p = 1.0 if mean == 0.0 else 0.0
        return (math.copysign(math.inf, mean) if mean else 0.0), p, mean, mean
    t = mean / se
    half = float(special.stdtrit(n - 1, 1.0 - alpha / 2.0)) * se
    return t, float(2.0 * special.stdtr(n - 1, -abs(t))), mean - half, mean + half


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (Holm 1979), monotone and capped at 1."""
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def _units(rows: list[tuple[str, float]], cluster: str) -> np.ndarray:
    """Log ratios per unit of analysis: per decision, or averaged per patient."""
    if cluster == "decision":
        return np.array([r for _, r in rows], float)
    per: dict[str, list[float]] = {}
    for patient, r in rows:
        per.setdefault(patient, []).append(r)
    return np.array([float(np.mean(v)) for v in per.values()], float)


def _group_row(members: list[Decision], quantity: str, alpha: float, min_n: int, cluster: str) -> dict:
    choices = [d.choice for d in members]
    rows = [(d.patient, _log_ratio(d, quantity)) for d in members]
    usable = [(p, r) for p, r in rows if math.isfinite(r)]
    r = _units(usable, cluster)
    n_lower, n_higher = int((r < 0).sum()), int((r > 0).sum())
    t, p_t, low, high = _t_test(r, alpha) if r.size else (math.nan,) * 4
    p_sign = _sign_p(n_lower, n_higher) if r.size else math.nan
    tested = r.size >= min_n
    mean = float(r.mean()) if r.size else math.nan
    return {"n": len(members), "n_accept": choices.count("accept"), "n_modify": choices.count("modify"),
            "n_override": choices.count("override"),
            "share_modified": choices.count("modify") / len(members),
            "share_overridden": choices.count("override") / len(members),
            "n_patients": len({d.patient for d in members}), "n_excluded": len(rows) - len(usable),
            "n_units": int(r.size), "mean_log_ratio": mean, "ci_low": low, "ci_high": high,
            "ratio": math.exp(mean) if r.size else math.nan, "t_stat": t, "p_t": p_t,
            "n_lower": n_lower, "n_higher": n_higher, "p_sign": p_sign,
            "p_value": max(p_t, p_sign) if tested else math.nan}


def override_analysis(decisions: Iterable[Decision], by: Sequence[str], quantity: str = "dose_mg", *,
                      min_n: int = 5, alpha: float = 0.05, cluster: str = "patient") -> pd.DataFrame:
    """Per-subgroup report of how clinicians deviate from the twin, flagging recurring systematic overrides.

    The method and the flag rule are those of the module docstring.

    Parameters
    ----------
    decisions : iterable of Decision
    by : sequence of str
        Subgroup label keys to group by (e.g. ``["renal"]``); a decision without a key is in ``"<missing>"``.
    quantity : str, default "dose_mg"
        Numeric action field compared (log of given / proposed).
    min_n : int, default 5
        Fewest units (patients, or decisions with ``cluster="decision"``) a subgroup needs to be tested.
    alpha : float, default 0.05
        Family-wise error rate over the tested subgroups (Holm), and 1 − confidence of the interval.
    cluster : {"patient", "decision"}, default "patient"
        Unit of analysis: ratios averaged per patient first, or every decision as independent.

    Returns
    -------
    pandas.DataFrame
        One row per subgroup: the ``by`` columns, ``n`` (decisions), ``n_accept``, ``n_modify``,
        ``n_override``, ``share_modified``, ``share_overridden``, ``n_patients``, ``n_excluded`` (no ratio),
        ``n_units`` (tested units), ``mean_log_ratio`` with its ``ci_low``/``ci_high``, ``ratio`` (geometric
        mean given/proposed), ``t_stat``, ``p_t``, ``n_lower``, ``n_higher``, ``p_sign``, ``p_value``
        (``max(p_t, p_sign)``, NaN when untested), ``p_holm``, ``flag`` (``"systematic"``, ``"none"``,
        ``"insufficient-data"``) and ``direction`` (``"lower"``/``"higher"``/``""``).  ``attrs`` holds
        ``by``, ``quantity``, ``alpha``, ``min_n``, ``cluster`` and the ``rule`` in words.

    Examples
    --------
    >>> from medtwin.control.recommendation import Recommendation
    >>> rec = Recommendation(kind="regimen", action={"dose_mg": 1000.0}, status="optimal", target={})
    >>> ds = [decide(rec, "modify", given={"dose_mg": 750.0 + i}, reason="renal", patient=f"p{i}",
    ...              clinician="dr.who", time=0.0, subgroup={"renal": "CrCl<30"}) for i in range(12)]
    >>> ds += [decide(rec, "accept", patient=f"q{i}", clinician="dr.who", time=0.0,
    ...               subgroup={"renal": "CrCl>=60"}) for i in range(12)]
    >>> report = override_analysis(ds, by=["renal"])
    >>> report[["renal", "n", "flag", "direction"]].to_string(index=False)
    '   renal  n       flag direction\\n CrCl<30 12 systematic     lower\\nCrCl>=60 12       none          '
    """
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise DataError("override_analysis: `by` needs at least one subgroup key")
    if cluster not in ("patient", "decision"):
        raise DataError(f"override_analysis: cluster must be 'patient' or 'decision', not {cluster!r}")
    if not (0.0 < alpha < 1.0) or int(min_n) < 2:
        raise DataError(f"override_analysis: need 0 < alpha < 1 and min_n >= 2, got alpha={alpha}, min_n={min_n}")
    groups: dict[tuple, list[Decision]] = {}
    for d in decisions:
        if not isinstance(d, Decision):
            raise DataError(f"override_analysis: expected Decision values, got {type(d).__name__}")
        groups.setdefault(tuple(d.subgroup.get(k, MISSING) for k in by), []).append(d)
    columns = [*by, "n", "n_accept", "n_modify", "n_override", "share_modified", "share_overridden",
               "n_patients", "n_excluded", "n_units", "mean_log_ratio", "ci_low", "ci_high", "ratio", "t_stat",
               "p_t", "n_lower", "n_higher", "p_sign", "p_value", "p_holm", "flag", "direction"]
    rows = [{**dict(zip(by, key)), **_group_row(groups[key], quantity, alpha, int(min_n), cluster)}
            for key in sorted(groups)]
    report = pd.DataFrame(rows, columns=columns)
    tested = report["p_value"].notna().to_numpy()
    report["p_holm"] = np.nan
    if tested.any():
        report.loc[tested, "p_holm"] = _holm(report.loc[tested, "p_value"].to_numpy(float))
    systematic = (tested & (report["p_holm"].to_numpy() < alpha)
                  & (report["mean_log_ratio"].abs().to_numpy() >= MIN_EFFECT))
    report["flag"] = np.where(systematic, "systematic", np.where(tested, "none", "insufficient-data"))
    report["direction"] = np.where(systematic, np.where(report["mean_log_ratio"] < 0, "lower", "higher"), "")
    report.attrs.update(by=list(by), quantity=quantity, alpha=float(alpha), min_n=int(min_n), cluster=cluster,
                        rule=(f"systematic: Holm-adjusted max(t-test, sign-test) p < {alpha:g} over the tested "
                              f"subgroups and |mean log({quantity} given/proposed)| >= log(1.1); tested: at least "
                              f"{int(min_n)} {cluster}s with a ratio"))
    return report


# ------------------------------------------------------------------------------ discrepancy term
@dataclass(frozen=True)
class DiscrepancyTerm:
    """Per-subgroup multiplicative factor on a proposed quantity, learnt from recurring overrides.

    Build it with :meth:`from_analysis`; see the module docstring for the shrinkage and why the factor
    scales the proposal rather than the target.

    Attributes
    ----------
    quantity : str
        Action field scaled (e.g. ``"dose_mg"``).
    by : tuple of str
        Subgroup label keys, in the order of the keys of ``factors``.
    k : float
        Shrinkage constant: weight ``w = n / (n + k)``; 0: no shrinkage; inf: no term.
    factors : dict
        Subgroup labels (tuple, in ``by`` order) -> ``{"n", "mean_log_ratio", "weight", "factor", "flag"}``.

    Examples
    --------
    >>> term = DiscrepancyTerm("dose_mg", ("renal",), 10.0,
    ...                        {("CrCl<30",): {"n": 10, "mean_log_ratio": -0.2, "weight": 0.5,
    ...                                        "factor": 0.904837, "flag": "systematic"}})
    >>> term.adjust({"dose_mg": 1000.0, "interval_h": 12.0}, {"renal": "CrCl<30"})
    {'dose_mg': 904.837, 'interval_h': 12.0}
    >>> term.adjust({"dose_mg": 1000.0}, {"renal": "normal"})
    {'dose_mg': 1000.0}
    """

    quantity: str
    by: tuple
    k: float
    factors: dict

    @classmethod
    def from_analysis(cls, report: pd.DataFrame, *, k: float = 10.0, only_flagged: bool = True) -> DiscrepancyTerm:
        """Factors ``exp(w · mean_log_ratio)``, ``w = n_units / (n_units + k)``, from an :func:`override_analysis`.

        Parameters
        ----------
        report : DataFrame
            An :func:`override_analysis` report (its ``attrs`` name ``by`` and ``quantity``).
        k : float, default 10
            Shrinkage constant (>= 0; ``math.inf`` switches the term off).
        only_flagged : bool, default True
            Terms only for ``systematic`` subgroups (others' means are noise by the report's own test).
        """
        k = float(k)
        if not k >= 0.0:
            raise DataError(f"DiscrepancyTerm: k must be >= 0 (inf switches the term off), got {k}")
        if "by" not in report.attrs or "quantity" not in report.attrs:
            raise DataError("DiscrepancyTerm.from_analysis needs a report from override_analysis (attrs by, quantity)")
        by = tuple(report.attrs["by"])
        factors = {}
        for _, row in report.iterrows():
            n, mean = int(row["n_units"]), float(row["mean_log_ratio"])
            if (only_flagged and row["flag"] != "systematic") or n == 0 or not math.isfinite(mean):
                continue
            w = 0.0 if math.isinf(k) else n / (n + k)
            factors[tuple(str(row[b]) for b in by)] = {"n": n, "mean_log_ratio": mean, "weight": w,
                                                       "factor": math.exp(w * mean), "flag": str(row["flag"])}
        return cls(report.attrs["quantity"], by, k, factors)

    @classmethod
    def none(cls, quantity: str = "dose_mg") -> DiscrepancyTerm:
        """A term that changes nothing."""
        return cls(quantity, (), math.inf, {})

    def _key(self, subgroup: Mapping[str, str]) -> tuple:
        return tuple(str(subgroup.get(b, MISSING)) for b in self.by)

    def factor(self, subgroup: Mapping[str, str]) -> float:
        """The multiplicative factor for a subgroup (1 when it has no term)."""
        entry = self.factors.get(self._key(subgroup))
        return 1.0 if entry is None else float(entry["factor"])

    def note(self, subgroup: Mapping[str, str]) -> str:
        """Why the proposal is (or is not) adjusted, in words for the clinician."""
        entry = self.factors.get(self._key(subgroup))
        labels = ", ".join(f"{b}={v}" for b, v in zip(self.by, self._key(subgroup)))
        if entry is None:
            return f"no override-based adjustment for {labels or 'this patient'}"
        return (f"{self.quantity} x{entry['factor']:.3f}: clinicians gave {math.exp(entry['mean_log_ratio']):.2f}x "
                f"the proposal in {labels} ({entry['n']} units, {entry['flag']}; shrinkage weight "
                f"{entry['weight']:.2f} with k={self.k:g})")

    def adjust(self, action: Mapping[str, Any], subgroup: Mapping[str, str]) -> dict:
        """The action with ``quantity`` multiplied by :meth:`factor` (sequences elementwise); the rest unchanged.

        Rounded to 6 significant digits. The reason is :meth:`note`; :meth:`adjust_recommendation`
        puts it in the recommendation's message.
        """
        f = self.factor(subgroup)
        out = dict(action)
        if f != 1.0 and self.quantity in out:
            value = out[self.quantity]
            scale = (lambda x: float(f"{float(x) * f:.6g}"))
            out[self.quantity] = [scale(v) for v in value] if isinstance(value, (list, tuple)) else scale(value)
        return out

    def adjust_recommendation(self, recommendation, subgroup: Mapping[str, str]):
        """A copy of the recommendation with the adjusted action and the note appended to its message.

        The copy keeps status, constraints and bands *of the unadjusted proposal*: re-check safety
        constraints before giving the adjusted action.
        """
        if self.factor(subgroup) == 1.0:
            return recommendation
        message = "; ".join(m for m in (recommendation.message, "adjusted: " + self.note(subgroup)) if m)
        return replace(recommendation, action=self.adjust(recommendation.action, subgroup), message=message)

    def as_dict(self) -> dict:
        """JSON-ready description for reports."""
        return {"quantity": self.quantity, "by": list(self.by), "k": None if math.isinf(self.k) else self.k,
                "terms": [{"subgroup": dict(zip(self.by, key)), **entry} for key, entry in self.factors.items()]}


# ------------------------------------------------------------------------------ data under advice
def mark_under_advice(measurements: Iterable, decisions: Iterable[Decision]) -> tuple:
    """Flag the measurements taken while an accepted or modified decision was in force.

    A decision at time ``t`` is in force on ``[t, end)`` with ``end`` the earliest of its
    ``in_force_until`` and the next decision's time (of the last decision at one time, only the last
    governs).  Measurement times must be on the same clock as the decisions (aligned).  A measurement
    already flagged stays flagged.

    Parameters
    ----------
    measurements : iterable of Measurement
        One patient's measurements (any order).
    decisions : iterable of Decision
        That patient's decisions (any order).

    Returns
    -------
    tuple of Measurement
        In input order; those inside a twin-guided window with ``under_advice=True``.

    Raises
    ------
    DataError
        Decisions about more than one patient.

    Examples
    --------
    >>> from medtwin.core.stream import Measurement
    >>> from medtwin.control.recommendation import Recommendation
    >>> rec = Recommendation(kind="regimen", action={"dose_mg": 1000.0}, status="optimal", target={})
    >>> ds = [decide(rec, "accept", patient="p1", clinician="a", time=10.0, in_force_until=20.0),
    ...       decide(rec, "override", given={"dose_mg": 500.0}, reason="bleeding", patient="p1",
    ...              clinician="a", time=30.0)]
    >>> ms = [Measurement(float(t), "C", 10.0, "mg/L") for t in (5, 10, 19.5, 20, 35)]
    >>> [m.under_advice for m in mark_under_advice(ms, ds)]
    [False, True, True, False, False]
    """
    ordered = sorted(decisions, key=lambda d: d.time)
    patients = {d.patient for d in ordered}
    if len(patients) > 1:
        raise DataError(f"mark_under_advice: decisions of one patient expected, got {sorted(patients)}")
    starts, ends = [], []
    for i, d in enumerate(ordered):
        end = ordered[i + 1].time if i + 1 < len(ordered) else math.inf
        if d.in_force_until is not None:
            end = min(end, d.in_force_until)
        if d.twin_guided and end > d.time:
            starts.append(d.time)
            ends.append(end)
    out = []
    for m in measurements:
        i = bisect.bisect_right(starts, m.time) - 1
        inside = i >= 0 and m.time < ends[i]
        out.append(replace(m, under_advice=True) if inside and not m.under_advice else m)
    return tuple(out)
