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

import importlib as _importlib
import sys as _sys
import types as _types

from medtwin._lazy import lazy_exports as _lazy_exports

#: Loaded on first use (PEP 562): importing one submodule (``medtwin.infer.posterior_codec`` for a live twin's
#: file) does not load the population fits and their compiled kernels (about a second in a new process).
_LAZY = {
    "FitResult": "medtwin.infer.foce",
    "fit_focei": "medtwin.infer.foce",
    "BayesFitResult": "medtwin.infer.hierarchical",
    "fit_nuts": "medtwin.infer.hierarchical",
    "personalize": "medtwin.infer.personalize",
    "plot_individual": "medtwin.infer.plots",
    "Posterior": "medtwin.infer.posterior",
    "probability": "medtwin.infer.posterior",
    "ValidationResult": "medtwin.infer.validate",
    "plot_calibration": "medtwin.infer.validate",
    "validate": "medtwin.infer.validate",
}

__all__ = ["BayesFitResult", "FitResult", "Posterior", "ValidationResult", "fit_focei", "personalize",
           "fit_nuts", "plot_calibration", "plot_individual", "probability", "validate"]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())


class _Package(_types.ModuleType):
    """``personalize`` and ``validate`` name both a function and its submodule.  Importing the submodule sets the
    package attribute to the module; these properties keep the public name the function, as the eager imports did."""

    def _function(name):  # noqa: N805 - a helper run in the class body
        def get(self):
            return getattr(_importlib.import_module(f"{__name__}.{name}"), name)

        return property(get, lambda self, value: None)  # the import system's setattr(package, name, module)

    personalize = _function("personalize")
    validate = _function("validate")
    del _function


_sys.modules[__name__].__class__ = _Package
