"""Causal what-ifs: structural causal models, identification by adjustment, effect estimation, sensitivity.

* :mod:`~medtwin.causal.scm` — :class:`SCM` with structural equations and noise, ``do()``, sampling,
  counterfactuals; :mod:`~medtwin.causal.mechanistic` — :class:`PKExposure`, a node that is a medtwin
  PK simulation (covariates → PK parameters → exposure).
* :mod:`~medtwin.causal.identification` — backdoor sets, minimal sets, the optimal O-set, and
  :class:`~medtwin.errors.AdjustmentError` refusals (post-treatment variables, colliders).
* :mod:`~medtwin.causal.estimators` — g-formula, IPW, AIPW with influence-function or bootstrap CIs.
* :mod:`~medtwin.causal.sensitivity` — E-values and a bias-formula curve.

The layer sits beside ``infer``/``assimilate``/``imaging``: it imports only ``core``, ``models`` and
``errors``.  See docs/causal.md.
"""

from medtwin.causal.estimators import EffectEstimate, aipw, difference_in_means, g_formula, ipw, propensity_scores
from medtwin.causal.identification import (
    AdjustmentError, check_adjustment, is_backdoor_set, minimal_adjustment_sets, open_backdoor_path,
    optimal_adjustment_set,
)
from medtwin.causal.mechanistic import PKExposure
from medtwin.causal.scm import SCM, Additive, Bernoulli, Constant, Equation, Function, Linear, Noise, Variable
from medtwin.causal.sensitivity import bias_curve, e_value, e_value_difference, plot_bias_curve
from medtwin.causal.strata import estimate_effect, stratum_effects

__all__ = [
    "SCM", "Variable", "Noise", "Equation", "Linear", "Additive", "Function", "Bernoulli", "Constant",
    "PKExposure",
    "AdjustmentError", "check_adjustment", "is_backdoor_set", "minimal_adjustment_sets", "open_backdoor_path",
    "optimal_adjustment_set",
    "EffectEstimate", "g_formula", "ipw", "aipw", "difference_in_means", "propensity_scores",
    "estimate_effect", "stratum_effects",
    "e_value", "e_value_difference", "bias_curve", "plot_bias_curve",
]
