"""Inference: population fits, one patient's posterior, forecasts, diagnostics and validation.

=========================  ==============================================================
module                     what
=========================  ==============================================================
``infer.foce``             population fit by FOCE with interaction (NONMEM-comparable OFV)
``infer.hierarchical``     population fit by hierarchical Bayes (NUTS)
``infer.personalize``      one patient's posterior: MAP + Laplace, NUTS; sequential updates
``infer.posterior``        Posterior.predict → PredictiveBand, probability queries
``infer.diagnostics``      PRED/IPRED/CWRES/NPDE, VPC, goodness-of-fit panel
``infer.validate``         fit on the first k observations, score the rest (coverage, MAPE)
``infer.plots``            the individual fit / forecast with bands, data and doses
``infer.sensitivity``      global Sobol indices (SALib) of any model output
=========================  ==============================================================

Writing a population fit's tables and plots to a folder is I/O: :mod:`medtwin.io.fit_report`.

Examples
--------
>>> from medtwin.infer import fit_focei, personalize
>>> callable(fit_focei) and callable(personalize)
True
"""

from medtwin.infer.foce import FitResult, fit_focei
from medtwin.infer.hierarchical import BayesFitResult, fit_nuts
from medtwin.infer.personalize import personalize
from medtwin.infer.plots import plot_individual
from medtwin.infer.posterior import Posterior, probability
from medtwin.infer.validate import ValidationResult, plot_calibration, validate

__all__ = ["BayesFitResult", "FitResult", "Posterior", "ValidationResult", "fit_focei", "personalize",
           "fit_nuts", "plot_calibration", "plot_individual", "probability", "validate"]
