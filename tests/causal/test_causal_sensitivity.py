"""E-values against VanderWeele & Ding (2017) and the bias-formula curve against its closed form."""

import math

import numpy as np
import pytest

from medtwin.causal import bias_curve, e_value, e_value_difference, plot_bias_curve
from medtwin.errors import DataError


def test_e_values_match_the_paper():
    # VanderWeele & Ding 2017, breastfeeding example: RR 3.9 (95 % CI 1.8-8.7) -> E-values 7.2 and 3.0
    estimate, ci = e_value(3.9, 1.8, 8.7)
    assert round(estimate, 1) == 7.3 and round(ci, 1) == 3.0
    assert e_value(1 / 3.9) == pytest.approx(e_value(3.9))         # protective effects: invert
    assert e_value(0.8, 0.6, 1.1) == (pytest.approx(1.809, abs=1e-3), 1.0)
    # difference: RR = exp(0.91 d); an effect of 0 has E-value 1
    assert e_value_difference(0.0, 2.0) == 1.0
    d = 3.4 / 7.9
    assert e_value_difference(3.4, 7.9) == pytest.approx(math.exp(0.91 * d) + math.sqrt(
        math.exp(0.91 * d) * (math.exp(0.91 * d) - 1)))
    with pytest.raises(DataError, match="does not contain"):
        e_value(2.0, 2.5, 3.0)
    with pytest.raises(DataError, match="> 0"):
        e_value(-1.0)


def test_bias_curve_and_plot(tmp_path):
    curve = bias_curve(3.4, (2.4, 4.5), np.linspace(0, 10, 11), np.linspace(-0.5, 0.5, 5))
    assert curve["adjusted"].shape == (11, 5)
    np.testing.assert_allclose(curve["adjusted"][7, 4], 3.4 - 7.0 * 0.5)
    np.testing.assert_allclose(curve["upper"] - curve["lower"], 2.1)
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_bias_curve(curve, unit="kg")
    ax.figure.savefig(tmp_path / "bias.png")
    assert (tmp_path / "bias.png").stat().st_size > 1000
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        bias_curve(1.0, (0.0, 2.0), [1.0], [1.5])
