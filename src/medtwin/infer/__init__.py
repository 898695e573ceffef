"""Inference: population fits (FOCEI) and, later, individual personalisation.

Examples
--------
>>> from medtwin.infer import fit_focei, FitResult
>>> callable(fit_focei)
True
"""

from medtwin.infer.foce import FitResult, fit_focei

__all__ = ["FitResult", "fit_focei"]
