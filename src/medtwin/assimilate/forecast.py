"""Forecasts from a belief: posterior-predictive bands of every output under a regimen.

Draws of z = [states, log parameters] come from the belief (a Gaussian or the
weighted particles); each draw is propagated through the model and the inputs
with the process noise of every step (the observer's own stochastic model, so
the band widens as the parameters drift), and measured outputs also get their
residual error (``band.observed``).  The result is the same
:class:`~medtwin.core.data.PredictiveBand` that a Bayesian
personalization returns, so AUC, Cmax and probability queries work on both.

Examples
--------
>>> import numpy as np
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> from medtwin.assimilate.observers import UnscentedKalmanFilter
>>> from medtwin.assimilate.statespace import StateSpace
>>> space = StateSpace.build(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, estimated=("CL",))
>>> ukf = UnscentedKalmanFilter(space)
>>> belief = ukf.init(np.array([0.0, np.log(2.0)]), np.diag([0.0, 0.2**2]))
>>> band = forecast_band(ukf, belief, Regimen.single(500.0), {}, horizon=12.0, step=1.0, n_draws=200)
>>> band.times[-1], round(float(band.median("C")[0]), 1)   # the dose at t = 0 is given at the start
(np.float64(12.0), 0.0)
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medtwin.core.inputs import input_schedule
from medtwin.assimilate.observers import _propagate
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.errors import DataError


def forecast_band(observer, belief, inputs: Regimen, errors: Mapping[str, ResidualError], *, horizon: float,
                  step: float = 0.25, n_draws: int = 500, seed: int = 0, process_noise: bool = True):
    """Predictive band from ``belief.time`` to ``belief.time + horizon`` h every ``step`` h.

    Parameters
    ----------
    observer : UnscentedKalmanFilter, ExtendedKalmanFilter or ParticleFilter
        Gives the state space (model, fixed parameters, noise levels).
    belief : GaussianBelief or ParticleBelief
    inputs : Regimen
        Every input, past and planned (model units).
    errors : mapping
        Output -> residual error, for the ``observed`` draws.
    horizon, step : float
        Hours.
    n_draws, seed : int
        Monte-Carlo draws and their random stream.
    process_noise : bool
        Add the state noise and parameter drift along the way (default) or freeze them.

    Returns
    -------
    PredictiveBand
        ``draws[output]`` and ``observed[output]`` of shape (n_draws, T).
    """
    from medtwin.core.data import PredictiveBand

    if not (np.isfinite(horizon) and horizon > 0 and np.isfinite(step) and step > 0):
        raise DataError(f"forecast: horizon and step must be positive hours, got {horizon!r}, {step!r}")
    if n_draws < 2:
        raise DataError(f"forecast: n_draws must be >= 2, got {n_draws}")
    space = observer.space
    model = space.model
    rng = np.random.default_rng(seed)
    z = np.array(belief.sample(int(n_draws), rng), dtype=float)
    n_x = space.n_states
    z[:, :n_x] = np.maximum(z[:, :n_x], 0.0)
    times = belief.time + np.arange(0.0, horizon + step / 2, step)
    schedule = input_schedule(model, inputs, space.theta)
    draws = {name: np.empty((len(z), len(times))) for name in model.output_names}
    for k, t in enumerate(times):
        if k:
            z = _propagate(space, z, times[k - 1], t, schedule)
            if process_noise:
                z = z + rng.standard_normal(z.shape) * np.sqrt(space.process_variance(t - times[k - 1]))
                z[:, :n_x] = np.maximum(z[:, :n_x], 0.0)
        for name in draws:
            draws[name][:, k] = space.measure(z, name)
    observed = {}
    for name, error in errors.items():
        f = draws[name]
        observed[name] = f + rng.standard_normal(f.shape) * np.sqrt(error.variance(f))
    failed = int(np.sum(~np.all(np.isfinite(np.concatenate(list(draws.values()), axis=1)), axis=1)))
    units = {o.name: o.unit for o in model.outputs}
    return PredictiveBand(times=times, draws=draws, observed=observed, units=units, failed=failed)
