"""Mechanics of online band calibration: covariance matching, coverage/PIT, the detector on stationary data.

References: a linear-Gaussian state-space model whose noise variances are known
(the matching must recover them), Gaussian draws whose coverage and PIT are
known exactly, and a stationary stream on which the calibrated detector's false
alarms are bounded.
"""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.assimilate.calibration import (CovarianceMatching, coverage, pit_summary, pit_values,
                                            standardized_errors)
from medtwin.assimilate.detectors import Cusum
from medtwin.errors import DataError


def _kalman_with_matched_r(n, q, r_true, r_start, matching, seed):
    """Scalar random walk x' = x + w (Var w = q), y = x + v (Var v = r_true); R estimated online."""
    rng = np.random.default_rng(seed)
    x, m, p = 0.0, 0.0, 1.0
    state, estimates = matching.init(), []
    r_hat = r_start
    for _ in range(n):
        x += rng.normal(0.0, np.sqrt(q))
        y = x + rng.normal(0.0, np.sqrt(r_true))
        p_pred = p + q
        innovation = y - m
        state = matching.update(state, innovation, p_pred)  # E[v²] − H P⁻ Hᵀ = R at the fixed point
        r_hat = max(matching.value(state), 1e-6)
        gain = p_pred / (p_pred + r_hat)
        m, p = m + gain * innovation, (1 - gain) * p_pred
        estimates.append(r_hat)
    return np.asarray(estimates)


def test_covariance_matching_recovers_the_measurement_variance_of_a_linear_gaussian_model():
    matching = CovarianceMatching("additive", forgetting=0.999, prior=2.0, prior_weight=10.0, floor=1e-6)
    for r_true in (0.5, 2.0):
        est = _kalman_with_matched_r(30000, q=0.1, r_true=r_true, r_start=2.0, matching=matching, seed=3)
        assert abs(np.mean(est[-10000:]) / r_true - 1.0) < 0.06, (r_true, np.mean(est[-10000:]))


def test_variance_multiplier_converges_to_the_true_over_predicted_ratio():
    # A state known exactly (P = 0): innovations are pure noise of variance 0.9, the model says 0.25.
    rng = np.random.default_rng(0)
    e = rng.normal(0.0, np.sqrt(0.9), 20000)
    cm = CovarianceMatching("scale", forgetting=0.999, prior_weight=4.0)
    state = cm.init()
    for value in e:
        state = cm.update(state, value, 0.25)
    assert abs(cm.value(state) / (0.9 / 0.25) - 1.0) < 0.08
    assert cm.variance(state, 0.25) == pytest.approx(cm.value(state) * 0.25)


def test_matching_rejects_bad_settings_and_skips_non_finite_innovations():
    with pytest.raises(DataError):
        CovarianceMatching("median")
    with pytest.raises(DataError):
        CovarianceMatching("scale", forgetting=0.0)
    cm = CovarianceMatching("scale")
    assert cm.update(cm.init(), float("nan"), 1.0) == cm.init()


def test_coverage_of_exact_gaussian_bands():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(20000)
    z90 = 1.6448536269514722
    assert abs(coverage(np.full(y.size, -z90), np.full(y.size, z90), y) - 0.9) < 0.01  # binomial sd 0.002
    assert coverage([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.5, -0.1]) == 0.5  # bounds inclusive
    with pytest.raises(DataError):
        coverage([0.0], [1.0, 2.0], [0.5])


def test_pit_is_uniform_for_a_calibrated_forecast_and_u_shaped_for_a_narrow_one():
    rng = np.random.default_rng(2)
    draws = rng.standard_normal((2000, 400))
    calibrated = pit_summary(pit_values(draws, rng.standard_normal(2000)))
    narrow = pit_summary(pit_values(0.5 * draws, rng.standard_normal(2000)))
    assert abs(calibrated["mean"] - 0.5) < 0.02 and abs(calibrated["sd"] - 12 ** -0.5) < 0.01
    assert calibrated["ks"] < 0.04
    assert narrow["sd"] > 0.33 and narrow["low_tail"] + narrow["high_tail"] > 0.45  # P(|Z| > 0.64) ≈ 0.52


def test_calibrated_detector_stays_quiet_on_a_stationary_but_misspecified_stream():
    # Hourly 1-h forecast errors of a stationary patient whose model under-states the variance threefold,
    # with the hour-to-hour autocorrelation (0.3) a misspecified model leaves: the raw chart alarms again and
    # again, the chart on calibrated errors (ARL0 720 hours) stays below one alarm per 72 h.
    rng = np.random.default_rng(5)
    hours = 72 * 40
    e = np.empty(hours)
    e[0] = rng.standard_normal()
    for k in range(1, hours):
        e[k] = 0.3 * e[k - 1] + np.sqrt(1 - 0.09) * rng.standard_normal()
    e *= np.sqrt(3.0)
    variances = np.ones(hours)
    chart = Cusum.calibrate(720.0)
    raw_alarms = chart.run(e / np.sqrt(variances))[0].sum()
    z = standardized_errors(CovarianceMatching("scale", forgetting=0.95, prior_weight=4.0, floor=1.0), e, variances)
    calibrated_alarms = chart.run(z)[0].sum()
    assert raw_alarms / 40 > 3
    assert calibrated_alarms / 40 <= 1.0, calibrated_alarms
    assert abs(np.var(z) - 1.0) < 0.3


@pytest.mark.slow  # compiles the ICU twin and a foreign truth model (about 15 s alone on one core)
def test_calibrated_twin_widens_the_band_of_a_foreign_patient_and_stays_quiet_when_stationary():
    from medtwin.scenarios.foreign_glucose import foreign_stream, sample_foreign_patients
    from medtwin.scenarios.glucose_calibration import variant_twin

    patient = sample_foreign_patients(1, model="hovorka_icu", hours=8, seed=3, si_step_sd=0.0)[0]
    synthetic = foreign_stream(patient, 8, every_min=10.0)
    ct = variant_twin("scale", synthetic.stream.regimen)
    for m in synthetic.stream.measurements:
        ct = ct.assimilate([m])
    assert len(ct.scored) >= 20 and ct.alarms == ()
    assert ct.calibration_value() >= 1.0
    lo, hi = ct.forecast(horizon=1.0, step=1.0, n_draws=200, seed=1).interval("G", 0.9, residual=True)
    lo0, hi0 = ct.twin.forecast(None, horizon=1.0, step=1.0, n_draws=200, seed=1).interval("G", 0.9, residual=True)
    assert hi[-1] - lo[-1] == pytest.approx(np.sqrt(ct.calibration_value()) * (hi0[-1] - lo0[-1]), rel=1e-9)
