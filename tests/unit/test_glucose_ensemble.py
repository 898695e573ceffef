"""The model ensemble of live twins (medtwin.twin.ensemble): weights, draw shares, mixture band, scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from medtwin.core.data import PredictiveBand
from medtwin.errors import DataError
from medtwin.twin.ensemble import (EnsembleTwin, draw_counts, gaussian_log_density, mixture_band,
                                   mixture_weights)


def test_weights_are_the_normalized_prior_times_likelihood():
    log_prior = np.log([0.2, 0.3, 0.5])
    scores = np.array([-10.0, -12.5, -11.0])
    w = mixture_weights(log_prior, scores)
    reference = np.array([0.2, 0.3, 0.5]) * np.exp(scores)
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose(w, reference / reference.sum())
    # a better predictive likelihood moves weight to that member
    better = mixture_weights(log_prior, scores + np.array([0.0, 3.0, 0.0]))
    assert better[1] > w[1] and better[0] < w[0] and better[2] < w[2]


def test_weight_floor_keeps_every_member_alive_and_sums_to_one():
    w = mixture_weights(np.zeros(2), np.array([0.0, -500.0]), floor=0.02)
    assert w.sum() == pytest.approx(1.0)
    assert w[1] == pytest.approx(0.02 / 1.02)
    with pytest.raises(DataError):
        mixture_weights(np.zeros(2), np.zeros(2), floor=0.5)


def test_draw_counts_sum_and_proportion():
    c = draw_counts([0.123, 0.5, 0.377], 200)
    assert c.sum() == 200 and list(c) == [25, 100, 75]
    assert list(draw_counts([1.0, 0.0], 7)) == [7, 0]


def _gaussian_band(mean, sd, n, seed):
    rng = np.random.default_rng(seed)
    times = np.array([0.0, 1.0])
    x = mean + sd * rng.standard_normal((n, 2))
    y = x + 0.1 * rng.standard_normal((n, 2))
    return PredictiveBand(times=times, draws={"G": x}, observed={"G": y}, units={"G": "mmol/L"})


def test_mixture_band_quantiles_match_the_mixture_distribution():
    n = 40_000
    w = np.array([0.3, 0.7])
    band = mixture_band([_gaussian_band(5.0, 1.0, n, 1), _gaussian_band(8.0, 0.5, n, 2)], w, n)
    assert band.draws["G"].shape == (n, 2)

    def cdf(x):  # the mixture of the two members' latent outputs
        return w[0] * stats.norm.cdf(x, 5.0, 1.0) + w[1] * stats.norm.cdf(x, 8.0, 0.5)

    for q in (0.05, 0.3, 0.5, 0.9, 0.95):
        exact = optimize.brentq(lambda x: cdf(x) - q, 0.0, 15.0)
        assert band.quantiles("G", q=(q,))[0, -1] == pytest.approx(exact, abs=0.05)
    # observed draws (with residual error) pooled the same way: mean of the mixture
    assert band.observed["G"][:, -1].mean() == pytest.approx(0.3 * 5.0 + 0.7 * 8.0, abs=0.03)


def test_mixture_band_needs_shared_times():
    a = _gaussian_band(5.0, 1.0, 10, 1)
    b = PredictiveBand(times=np.array([0.0, 2.0]), draws=a.draws, observed=a.observed, units=a.units)
    with pytest.raises(DataError):
        mixture_band([a, b], [0.5, 0.5], 10)


def test_ensemble_scores_are_the_discounted_log_densities_of_the_members_forecasts():
    from medtwin.scenarios.glucose_calibration import variant_twin
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.scenarios.icu import synthetic_stream

    patient = sample_icu_patients(1, model="icing", hours=4, seed=3)[0]
    synthetic = synthetic_stream(patient, 3, every_min=15.0, seed=0)
    ens = variant_twin("ensemble", synthetic.stream.regimen)
    assert isinstance(ens, EnsembleTwin) and ens.names == ("icing", "bergman", "bergman-variable")
    for m in synthetic.stream.measurements:
        ens = ens.assimilate([m])
    # independent reference: S_m = sum_k phi^(n-1-k) l_mk over the member's scored forecasts
    expected = []
    for member in ens.members:
        ls = [-0.5 * (math.log(2 * math.pi * s[3]) + s[1] ** 2 / s[3]) for s in member.scored]
        expected.append(sum(ens.forgetting ** (len(ls) - 1 - k) * v for k, v in enumerate(ls)))
    assert len(ens.members[0].scored) >= 6
    assert np.allclose(ens.scores, expected)
    assert ens.weights.sum() == pytest.approx(1.0)
    band = ens.forecast(None, horizon=1.0, step=1.0, n_draws=50, seed=1)
    assert band.observed["G"].shape == (50, 2)
    assert gaussian_log_density(0.0, 1.0) == pytest.approx(-0.5 * math.log(2 * math.pi))

