"""Credibility reports (ASME V&V 40-2018, FDA 2023 guidance) generated from evidence computed for each model.

* :mod:`~medtwin.credibility.context`: the context of use, model risk and credibility goals;
* :mod:`~medtwin.credibility.references`: independent reference solutions (what a model claims to compute);
* :mod:`~medtwin.credibility.verification`, :mod:`~medtwin.credibility.validation`,
  :mod:`~medtwin.credibility.uq`: the checks, run now;
* :mod:`~medtwin.credibility.report`: one generator, one HTML document.
"""

from medtwin.credibility.context import ContextOfUse, load_context, model_risk, shipped_context
from medtwin.credibility.report import CredibilityReport, credibility_report

__all__ = ["ContextOfUse", "CredibilityReport", "credibility_report", "load_context", "model_risk",
           "shipped_context"]
