"""P(AKI) as the dose recommender's toxicity constraint: a :class:`Threshold` whose "attained" is a risk.

:class:`AKIRisk` plugs the exposure → AKI curve of :mod:`medtwin.prognosis.toxicity` into
:func:`medtwin.control.dosing.recommend_dose` without changing it: ``recommend_dose`` averages
``toxic.attained(metric)`` over the posterior draws as P(toxic), so with per-draw AKI probabilities that
average is P(AKI within 7 days) marginal over the patient's exposure uncertainty, and
``max_toxic_probability`` becomes the largest acceptable P(AKI).

Examples
--------
>>> from medtwin.control.targets import AUC24Window
>>> risk = AKIRisk(AUC24Window())
>>> [round(float(p), 3) for p in risk.attained([500.0, 800.0])]
[0.07, 0.245]
>>> risk.describe()["name"]
'P(AKI within 7 d) from AUC24'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medtwin.control.targets import AUC24Window, Target, Threshold
from medtwin.errors import DataError
from medtwin.prognosis.toxicity import AKIExposureModel

__all__ = ["AKIRisk"]


@dataclass(frozen=True)
class AKIRisk(Threshold):
    """Toxicity as P(AKI within 7 days | AUC24) per draw (use with ``max_toxic_probability`` = max P(AKI)).

    Parameters
    ----------
    metric_target : Target
        Gives the exposure metric; must measure AUC24 in mg·h/L (default ``AUC24Window()``).
    model : AKIExposureModel
        The exposure–AKI curve (default :meth:`AKIExposureModel.vancomycin`, sources in its module).
    """

    metric_target: Target = field(default_factory=AUC24Window)
    model: AKIExposureModel = field(default_factory=AKIExposureModel.vancomycin)

    def __post_init__(self):
        if not isinstance(self.metric_target, AUC24Window):
            raise DataError(f"AKIRisk: the exposure must be an AUC24Window, got {type(self.metric_target).__name__}")
        if not isinstance(self.model, AKIExposureModel):
            raise DataError(f"AKIRisk: model must be an AKIExposureModel, got {type(self.model).__name__}")

    def attained(self, values) -> np.ndarray:
        """P(AKI) per draw (a failed draw, NaN, counts as 1)."""
        return self.model.probability(values)

    def describe(self) -> dict:
        inner = self.metric_target.describe()
        return {"name": "P(AKI within 7 d) from AUC24", "above": None, "below": None, "unit": "probability",
                "output": inner["output"], "p_ref": self.model.p_ref, "auc_ref": self.model.auc_ref,
                "slope": self.model.slope}
