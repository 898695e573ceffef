"""Vancomycin exposure → AKI risk: shape, published anchors, and its use as the dose recommender's constraint."""

import numpy as np
import pytest

from medtwin.control.aki import AKIRisk
from medtwin.control.targets import AUC24Window, TroughWindow
from medtwin.errors import DataError
from medtwin.prognosis.toxicity import (AKIExposureModel, aki_probability, calibrate, expected_aki_probability,
                                        simulate_aki)


def test_risk_rises_monotonically_and_stays_a_probability():
    auc = np.linspace(0.0, 3000.0, 3001)
    p = aki_probability(auc)
    assert np.all(np.diff(p) > 0)
    assert p[0] == 0.0 and np.all((p >= 0) & (p < 1))
    assert aki_probability([np.nan])[0] == 1.0  # a failed exposure draw is treated as toxic


def test_published_anchor_points():
    m = AKIExposureModel.vancomycin()
    # Zasowski 2018 (AAC 62:e01684-17): 3- to 4-fold risk above AUC0-24 677 mg·h/L; the default puts 3.5 between
    # typical exposures either side (500 and 800) and the reference risk 0.07 at 500
    assert m.probability(500.0) == pytest.approx(0.07, abs=1e-12)
    assert m.probability(800.0) / m.probability(500.0) == pytest.approx(3.5, abs=1e-12)
    # population-level risk ratio above vs below the 677 threshold, for a lognormal AUC spread (CV 35 %)
    rng = np.random.default_rng(0)
    auc = 550.0 * np.exp(0.34 * rng.standard_normal(200_000))
    p = aki_probability(auc)
    rr = p[auc >= 677].mean() / p[auc < 677].mean()
    assert 3.0 <= rr <= 4.0
    # the guideline window 400–600 mg·h/L (Rybak 2020) keeps the risk below 12 %
    assert aki_probability([400.0, 600.0]).tolist() == pytest.approx([0.035, 0.117], abs=0.005)
    assert m.auc_for_probability(m.probability(677.0)) == pytest.approx(677.0, rel=1e-12)


def test_calibrate_through_two_points_and_trial_endpoint():
    m = calibrate(400.0, 900.0, 0.05, 0.30)
    np.testing.assert_allclose(m.probability([400.0, 900.0]), [0.05, 0.30], atol=1e-12)
    events = simulate_aki(np.full(50_000, 800.0), seed=1)
    assert events.mean() == pytest.approx(aki_probability([800.0])[0], abs=0.01)
    assert expected_aki_probability([500.0, 800.0]) == pytest.approx(np.mean(aki_probability([500.0, 800.0])))
    with pytest.raises(DataError):
        AKIExposureModel(1.5, 500.0, 2.0)
    with pytest.raises(DataError):
        aki_probability([-1.0])
    with pytest.raises(DataError):
        AKIRisk(TroughWindow())


def _posterior(cl=2.0, v=10.0, var=1e-6):
    from medtwin.core.observation import ResidualError
    from medtwin.core.population import IndividualPrior
    from medtwin.infer.posterior import Posterior
    from medtwin.models import get_model

    z = np.log([cl, v])
    prior = IndividualPrior("pk1_iv", ("CL", "V"), z, np.eye(2) * var, {}, ResidualError("additive", 1.0))
    return Posterior(get_model("pk1_iv"), prior, "laplace", ("CL", "V"), z, np.eye(2) * var, None, (), z,
                     np.eye(2) * var, "converged", "")


def test_recommend_dose_keeps_p_aki_below_the_limit():
    """The median objective aims at the window centre (AUC24 600, P(AKI) 0.117); a 0.08 limit must pull the
    recommendation down to AUC24 <= 522 mg·h/L, where the curve crosses 0.08."""
    from medtwin.control.dosing import DoseConstraints, recommend_dose

    eps = 0.08
    rec = recommend_dose(_posterior(), AUC24Window(400.0, 800.0), constraints=DoseConstraints(max_dose_mg=2000.0),
                         objective="median", toxic=AKIRisk(AUC24Window()), max_toxic_probability=eps, n_draws=50,
                         sensitivity=False)
    auc24 = rec.action["daily_mg"] / 2.0  # CL = 2 L/h, no uncertainty: AUC24 = daily dose / CL
    assert rec.probabilities["toxic"] == pytest.approx(aki_probability([auc24])[0], abs=0.005)
    assert rec.probabilities["toxic"] <= eps + 1e-12
    assert 400.0 <= auc24 <= AKIExposureModel.vancomycin().auc_for_probability(eps) + 1.0
