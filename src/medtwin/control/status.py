"""The status words of control: how a recommendation (dose optimisation or MPC) was reached.

Examples
--------
>>> RecommendationStatus.INFEASIBLE_FALLBACK == "infeasible-fallback", RecommendationStatus("optimal")
(True, 'optimal')
"""

from __future__ import annotations

from medtwin.core.status import Vocabulary

__all__ = ["RecommendationStatus"]


class RecommendationStatus(Vocabulary):
    """Status of a :class:`~medtwin.control.recommendation.Recommendation`."""

    #: the optimiser converged and every constraint holds
    OPTIMAL = "optimal"
    #: every constraint holds, but the optimiser stopped early
    FEASIBLE = "feasible"
    #: no action met every constraint; the action is the safest candidate found
    INFEASIBLE_FALLBACK = "infeasible-fallback"
