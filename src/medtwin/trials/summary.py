"""One trial's summary: the ATE table, the effects by baseline strata, CATE terms, as tables and as JSON.

Both front ends use it: ``medtwin trial`` writes it beside the per-patient CSV, the service stores it as the
trial job's result (which the dashboard draws as a forest plot).

Examples
--------
>>> from medtwin.trials.engine import PK_EXAMPLE, run_trial
>>> from medtwin.trials.spec import TrialSpec
>>> spec = TrialSpec.from_dict(PK_EXAMPLE).with_patients(12)
>>> summary = summarise_trial(spec, run_trial(spec))
>>> sorted(summary.as_dict())[:4]
['acceptance_rate', 'ate', 'patients', 'primary']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TrialSummary", "json_safe", "summarise_trial"]


def json_safe(value):
    """*value* with non-finite floats as None and numpy scalars as Python numbers (for strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        return json_safe(value.item())
    return value


@dataclass(frozen=True)
class TrialSummary:
    """What a trial found.

    Attributes
    ----------
    spec : TrialSpec
    result : TrialResult
    ate : pandas.DataFrame
        One row per endpoint (:func:`medtwin.trials.analysis.ate_table`).
    strata : pandas.DataFrame
        The primary endpoint's effect by baseline stratum (:func:`medtwin.trials.analysis.stratum_effects`).
    cate_terms, cate_effects : pandas.DataFrame or None
        The CATE model's terms and per-patient effects when the spec asks for CATE (``analysis.cate``).
    """

    spec: Any
    result: Any
    ate: Any
    strata: Any
    cate_terms: Any = None
    cate_effects: Any = None

    def as_dict(self) -> dict:
        """JSON-safe summary: trial, patients, seed, acceptance rate, statuses, primary, ate, strata, cate."""
        spec, result = self.spec, self.result
        out = {"trial": spec.name, "patients": spec.patients, "seed": spec.seed,
               "acceptance_rate": result.acceptance_rate, "statuses": result.status_counts(),
               "primary": dict(spec.primary), "ate": self.ate.to_dict(orient="index"),
               "strata": self.strata.to_dict(orient="records")}
        if self.cate_terms is not None:
            out["cate"] = self.cate_terms.to_dict(orient="records")
        return json_safe(out)


def summarise_trial(spec, result) -> TrialSummary:
    """The ATE table, stratum effects and (when the spec asks and there are ≥ 8 analysed patients) CATE."""
    from medtwin.trials.analysis import ate_table, cate, stratum_effects

    ates = ate_table(result, bootstrap=int(spec.analysis.get("bootstrap", 0)))
    strata = stratum_effects(result)
    terms = effects = None
    if spec.analysis.get("cate") and len(result.analysed) >= 8:
        terms, effects = cate(result, seed=spec.seed)
    return TrialSummary(spec, result, ates, strata, terms, effects)
