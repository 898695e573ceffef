"""Covariate hooks against hand-computed values."""

import numpy as np
import pytest

from medtwin import DataError, ParameterError, get_model
from medtwin.core.covariates import allometric, cockcroft_gault, power_effect


def test_cockcroft_gault_matches_the_published_formula():
    # (140 - 50) * 80 / (72 * 1.2) = 83.33 mL/min; women x 0.85.
    assert cockcroft_gault(50, 80, 1.2, False) == pytest.approx(83.3333333)
    assert cockcroft_gault(50, 80, 1.2, True) == pytest.approx(83.3333333 * 0.85)
    with pytest.raises(DataError, match="serum_creatinine"):
        cockcroft_gault(50, 80, 0.0, False)


def test_allometric_and_power_effects():
    np.testing.assert_allclose(allometric(np.array([35.0, 70.0, 140.0])), [0.5**0.75, 1.0, 2.0**0.75])
    assert power_effect(60.0, 120.0, 0.8) == pytest.approx(0.5**0.8)
    with pytest.raises(DataError, match="weight"):
        allometric(-1.0)


def test_vancomycin_covariate_model_follows_goti_2018():
    m = get_model("vancomycin_goti2018")
    typical = m.typical_parameters({"CRCL": np.array([120.0, 60.0]), "WT": np.array([70.0, 140.0]),
                                    "DIAL": np.array([0.0, 1.0])})
    np.testing.assert_allclose(typical["CL"], [4.5, 4.5 * 0.5**0.8 * 0.7])
    np.testing.assert_allclose(typical["V1"], [58.4, 58.4 * 2 * 0.5])
    np.testing.assert_allclose(typical["V2"], [38.4, 76.8])
    with pytest.raises(ParameterError, match="CRCL"):
        m.typical_parameters({"WT": 70.0})
