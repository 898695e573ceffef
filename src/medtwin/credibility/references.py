"""Independent reference solutions: what a model *claims* to compute, written here apart from its definition.

Code verification compares a model's numerical solution with a solution obtained without its code.  For each
model *specification* (a library model name) this module writes, independently of
:mod:`medtwin.models`:

* a closed form of some states under a dose regimen (superposition of the textbook bolus and zero-order
  infusion solutions: Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. Marcel Dekker 1982, ch. 1-3), and
* a mass balance: the states holding a conserved amount, the doses that enter them and the outflow rate
  out of them (the elimination flux), so that dose in = amount held + ∫ outflow.

A model implementation that claims a name (``Model.name``) is checked against the reference of that name: a
changed or broken definition under the name fails.  Models without a reference report "no reference" (code
verification then rests on the convergence order alone).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> ref = REFERENCES["pk1_iv"]
>>> a = ref.closed_form({"CL": 2.0, "V": 20.0}, Regimen.single(100.0), np.array([0.0, 10.0]))["CENTRAL"]
>>> [round(float(v), 6) for v in a]
[100.0, 36.787944]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["REFERENCES", "Reference", "dose_pulses"]


def dose_pulses(regimen, cmts) -> list[tuple[float, float, float]]:
    """Every dose into ``cmts`` (1-based) as ``(start h, amount mg, duration h)`` (duration 0: a bolus),
    additional doses (ADDL, II) expanded.  Steady-state records are not supported (ValueError)."""
    out = []
    for event in regimen.events:
        if event.evid != 1 or event.amount == 0.0:
            continue
        cmt = 1 if event.cmt is None else int(event.cmt)
        if cmt not in cmts:
            continue
        if event.ss:
            raise ValueError("reference solutions do not cover steady-state dose records")
        duration = event.amount / event.rate if event.rate > 0 else 0.0
        for k in range(int(event.addl) + 1):
            out.append((float(event.time + k * event.ii), float(event.amount), float(duration)))
    return out


def _exp_response(t: np.ndarray, pulses, coefficients, rates) -> np.ndarray:
    """Σ over doses and exponentials c·e^(−λ·(t − start)) for a unit bolus; a zero-order infusion integrates it."""
    total = np.zeros_like(t)
    for start, amount, duration in pulses:
        for c, lam in zip(coefficients, rates):
            if duration == 0.0:
                total += np.where(t >= start, amount * c * np.exp(-lam * np.clip(t - start, 0.0, None)), 0.0)
            else:
                rate = amount / duration
                inside = np.clip(t - start, 0.0, duration)
                after = np.clip(t - start - duration, 0.0, None)
                total += rate * c / lam * (1.0 - np.exp(-lam * inside)) * np.exp(-lam * after)
    return total


def _one_compartment(p: Mapping, regimen, t: np.ndarray) -> dict:
    k = p["CL"] / p["V"]
    return {"CENTRAL": _exp_response(t, dose_pulses(regimen, (1,)), (1.0,), (k,))}


def _two_compartment(p: Mapping, regimen, t: np.ndarray) -> dict:
    cl, v1, q, v2 = p["CL"], p["V1"], p["Q"], p["V2"]
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    root = np.sqrt(s * s - 4.0 * k10 * k21)
    alpha, beta = (s + root) / 2.0, (s - root) / 2.0
    pulses = dose_pulses(regimen, (1,))
    central = _exp_response(t, pulses, ((alpha - k21) / (alpha - beta), (k21 - beta) / (alpha - beta)),
                            (alpha, beta))
    peripheral = _exp_response(t, pulses, (-k12 / (alpha - beta), k12 / (alpha - beta)), (alpha, beta))
    return {"CENTRAL": central, "PERIPHERAL": peripheral}


def _gut(p: Mapping, regimen, t: np.ndarray) -> dict:
    """Stomach P1 and gut P2 after enteral boluses (CMT 3) while d2·P2 < PMAX (unsaturated appearance)."""
    d1, d2 = p["d1"], p["d2"]
    pulses = dose_pulses(regimen, (3,))
    if any(duration > 0 for _, _, duration in pulses):
        raise ValueError("the gut reference covers enteral boluses only")
    p1 = _exp_response(t, pulses, (1.0,), (d1,))
    p2 = _exp_response(t, pulses, (d1 / (d2 - d1), -d1 / (d2 - d1)), (d1, d2))
    return {"P1": p1, "P2": p2}


@dataclass(frozen=True)
class Reference:
    """An independent reference for one model specification.

    Attributes
    ----------
    closed_form : callable(params, regimen, times) -> {state: amounts}
        Amounts (state units) of some states at ``times`` (h), ``params`` by name in model units.
    conserved : tuple of str
        States whose amounts sum to what entered them minus what left.
    inflow_cmts : tuple of int
        Dose compartments (1-based) whose doses enter the conserved states.
    outflow : callable(states, params) -> array
        Rate (state unit/h) leaving the conserved states, from the states' amounts (dict of arrays).
    source : str
        Where the formulas come from.
    validity : callable(states, params) -> bool, optional
        Whether the closed form applies along the simulated states (e.g. an unsaturated absorption).
    """

    closed_form: Callable
    conserved: tuple
    inflow_cmts: tuple
    outflow: Callable
    source: str
    validity: Callable | None = None


_GIBALDI = "Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed. Marcel Dekker 1982, ch. 1-3 (superposition)"

#: References by model name.
REFERENCES: dict[str, Reference] = {
    "pk1_iv": Reference(_one_compartment, ("CENTRAL",), (1,), lambda x, p: p["CL"] / p["V"] * x["CENTRAL"],
                        _GIBALDI + "; elimination CL·C"),
    "vancomycin_goti2018": Reference(
        _two_compartment, ("CENTRAL", "PERIPHERAL"), (1,), lambda x, p: p["CL"] / p["V1"] * x["CENTRAL"],
        _GIBALDI + " (bi-exponential disposition, α/β from k10, k12, k21); elimination CL·C1"),
    "icing": Reference(
        _gut, ("P1", "P2"), (3,), lambda x, p: np.minimum(p["d2"] * x["P2"], p["PMAX"]),
        "ICING gut absorption (Lin J et al. Comput Methods Programs Biomed 2011;102(2):192-205, "
        "doi:10.1016/j.cmpb.2010.12.008): first-order stomach emptying d1 and gut absorption d2, appearance "
        "min(d2·P2, PMAX); closed form (Bateman) while unsaturated",
        validity=lambda x, p: bool(np.all(p["d2"] * x["P2"] < p["PMAX"]))),
}
