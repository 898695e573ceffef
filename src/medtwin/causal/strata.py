"""Graph-guarded estimation: the adjustment set checked against the causal graph, and effects by stratum.

:func:`estimate_effect` takes the causal graph (an :class:`~medtwin.causal.scm.SCM` or a DiGraph) with the
data: the adjustment set defaults to the optimal O-set, and a set the graph forbids (a mediator, a
post-treatment variable, a collider) is refused with :class:`~medtwin.errors.AdjustmentError` before any
model is fitted.  :func:`stratum_effects` estimates the effect within each level of a pre-treatment
stratum (subgroup / CATE by stratum); a stratum that is a descendant of the treatment is refused.

Examples
--------
>>> import networkx as nx, pandas as pd
>>> g = nx.DiGraph([("c", "a"), ("c", "y"), ("a", "m"), ("m", "y")])
>>> rng = np.random.default_rng(1)
>>> c = rng.normal(size=500); a = (rng.normal(size=500) + c > 0).astype(float)
>>> m = a + rng.normal(size=500); y = m + c + rng.normal(size=500)
>>> frame = pd.DataFrame({"c": c, "a": a, "m": m, "y": y})
>>> estimate_effect(g, frame, "a", "y").covariates
('c',)
>>> try:
...     estimate_effect(g, frame, "a", "y", adjust=["c", "m"])
... except AdjustmentError as exc:
...     print(str(exc)[:60])
cannot adjust for m: it is a descendant of the treatment a (
"""

from __future__ import annotations

from typing import Sequence

import networkx as nx
import numpy as np

from medtwin.causal.estimators import EffectEstimate, aipw, g_formula, ipw
from medtwin.causal.identification import causal_graph, check_adjustment, format_path, optimal_adjustment_set
from medtwin.errors import AdjustmentError, DatasetError, DataError

__all__ = ["estimate_effect", "stratum_effects"]

METHODS = {"g-formula": g_formula, "ipw": ipw, "aipw": aipw}


def estimate_effect(model, frame, treatment: str, outcome: str, *, adjust: Sequence[str] | None = None,
                    features: Sequence[str] = (), method: str = "aipw", **options) -> EffectEstimate:
    """Estimate the effect of ``treatment`` on ``outcome`` adjusting for a set the graph ``model`` validates.

    Parameters
    ----------
    model : SCM or networkx.DiGraph
        The assumed causal graph.
    frame : DataFrame
        The data; column names are the graph's variable names.
    adjust : sequence of str, optional
        The adjustment set; default the optimal O-set (:func:`optimal_adjustment_set`).
    features : sequence of str
        Extra model columns that are functions of the adjustment variables only (e.g. ``C2`` = C²); they
        are not graph variables, so keeping them pre-treatment is the caller's responsibility.
    method : {"g-formula", "ipw", "aipw"}
    **options
        Passed to the estimator (estimand, ci, trim, interactions ...).

    Raises
    ------
    AdjustmentError
        ``adjust`` holds a descendant of the treatment, a latent variable or a path-opening collider, or
        leaves a backdoor path open (the path is named).
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {list(METHODS)}, got {method!r}")
    z = optimal_adjustment_set(model, treatment, outcome) if adjust is None else check_adjustment(
        model, treatment, outcome, adjust)
    return METHODS[method](frame, treatment, outcome, [*sorted(z), *features], **options)


def stratum_effects(model, frame, treatment: str, outcome: str, stratum: str, *,
                    adjust: Sequence[str] | None = None, features: Sequence[str] = (),
                    method: str = "g-formula", **options) -> dict[object, EffectEstimate]:
    """The effect within each level of the pre-treatment variable ``stratum`` (level -> EffectEstimate).

    The stratum must not be a descendant of the treatment (a post-randomisation subgroup is refused with
    the path); it is removed from the adjustment set within strata (it is constant there).  ``adjust``,
    ``features`` and ``options`` as :func:`estimate_effect`.
    """
    graph, _ = causal_graph(model)
    if stratum not in graph:
        raise DataError(f"stratum {stratum!r} is not a variable of the causal graph")
    if stratum in nx.descendants(graph, treatment) or stratum == treatment:
        path = format_path(graph, nx.shortest_path(graph, treatment, stratum)) if stratum != treatment else stratum
        raise AdjustmentError(f"cannot form subgroups by {stratum}: it is affected by the treatment {treatment} "
                              f"(path {path}); subgroups must be defined on pre-treatment variables")
    if stratum not in frame.columns:
        raise DatasetError("no such column", column=stratum)
    z = optimal_adjustment_set(model, treatment, outcome) if adjust is None else check_adjustment(
        model, treatment, outcome, adjust)
    z = sorted(set(z) - {stratum})
    out = {}
    for level in sorted(frame[stratum].dropna().unique().tolist()):
        sub = frame[np.asarray(frame[stratum] == level)]
        out[level] = METHODS[method](sub, treatment, outcome, [*z, *features], **options)
    return out
