"""The status words of inference: population fits, posteriors, covariance steps, validation.

Examples
--------
>>> FitStatus.CONVERGED == "converged", FitStatus("check-diagnostics")
(True, 'check-diagnostics')
"""

from __future__ import annotations

from medtwin.core.status import Vocabulary

__all__ = ["FitStatus"]


class FitStatus(Vocabulary):
    """Outcome of an estimation step (see each producer for when it is given)."""

    #: the optimiser met its tolerance (MAP mode, population fit) or every sampler diagnostic passed (NUTS)
    CONVERGED = "converged"
    #: the optimiser stopped without meeting its tolerance
    NOT_CONVERGED = "not-converged"
    #: NUTS finished but an R-hat, ESS or divergence check failed: read ``message``
    CHECK_DIAGNOSTICS = "check-diagnostics"
    #: no usable result (no proper mode, a failed covariance step, a patient that could not be fitted)
    FAILED = "failed"
    #: a posterior that is the population prior itself (no data yet)
    PRIOR = "prior"
    #: a step that succeeded (the FOCEI covariance step)
    OK = "ok"
    #: a step that was not requested (the FOCEI covariance step)
    SKIPPED = "skipped"
