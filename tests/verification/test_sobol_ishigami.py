"""Sobol' indices of the Ishigami function against their closed form (issue 4, item 6).

f(x) = sin x1 + a sin² x2 + b x3⁴ sin x1, with x1, x2, x3 independent U(-π, π),
a = 7, b = 0.1 (Ishigami T, Homma T. Proc. ISUMA 1990, 398-403; indices in
Sobol' IM, Levitan YL. Comput Phys Commun 1999;117:52-61 and Saltelli A et al.,
Global Sensitivity Analysis: The Primer, Wiley 2008, §4.9).

Derivation, with E[sin² x] = 1/2, E[sin⁴ x] = 3/8, E[x⁴] = π⁴/5 and E[x⁸] = π⁸/9
for x ~ U(-π, π):

* E[f | x1] - E f = (1 + b π⁴/5) sin x1            → V1 = ½ (1 + b π⁴/5)²
* E[f | x2] - E f = a (sin² x2 - ½)                 → V2 = a² (3/8 - 1/4) = a²/8
* E[f | x3] - E f = 0                               → V3 = 0
* E[f | x1, x3] = (1 + b x3⁴) sin x1 + a/2, variance ½ (1 + 2bπ⁴/5 + b²π⁸/9),
  so V13 = ½ b² π⁸ (1/9 - 1/25) = 8 b² π⁸ / 225; V12 = V23 = V123 = 0.
* V = V1 + V2 + V13 = a²/8 + b π⁴/5 + b² π⁸/18 + ½.

S_i = V_i / V; ST1 = (V1 + V13)/V, ST2 = V2/V, ST3 = V13/V.
"""

import math

import numpy as np
import pytest

from medtwin.infer.sensitivity import sobol_indices

A, B = 7.0, 0.1
PI = math.pi


def ishigami(X: np.ndarray) -> np.ndarray:
    return np.sin(X[:, 0]) + A * np.sin(X[:, 1]) ** 2 + B * X[:, 2] ** 4 * np.sin(X[:, 0])


def analytic():
    v1 = 0.5 * (1 + B * PI**4 / 5) ** 2
    v2 = A**2 / 8
    v13 = 8 * B**2 * PI**8 / 225
    v = A**2 / 8 + B * PI**4 / 5 + B**2 * PI**8 / 18 + 0.5
    assert math.isclose(v, v1 + v2 + v13, rel_tol=1e-14)  # the two forms of V agree
    s1 = np.array([v1, v2, 0.0]) / v
    st = np.array([v1 + v13, v2, v13]) / v
    return s1, st, v


@pytest.fixture(scope="module")
def result():
    bounds = {"x1": (-PI, PI), "x2": (-PI, PI), "x3": (-PI, PI)}
    return sobol_indices(ishigami, bounds, n=2**14, seed=20261125, n_bootstrap=200)


def test_analytic_values_are_the_published_ones():
    s1, st, v = analytic()
    # Saltelli et al. (2008) Table: S1 ≈ 0.314, 0.442, 0; ST ≈ 0.558, 0.442, 0.244; V ≈ 13.84.
    np.testing.assert_allclose(s1, [0.3139, 0.4424, 0.0], atol=1e-4)
    np.testing.assert_allclose(st, [0.5576, 0.4424, 0.2437], atol=1e-4)
    assert v == pytest.approx(13.8446, abs=1e-4)


def test_indices_within_0_01_of_closed_form_at_n_2_pow_14(result):
    s1, st, v = analytic()
    assert result.n == 2**14 and result.n_evaluations == 2**14 * 5
    assert result.names == ("x1", "x2", "x3")
    err_s1 = np.abs(result.S1 - s1)
    err_st = np.abs(result.ST - st)
    print(f"Ishigami N=2^14: |S1 err| = {err_s1.round(5)}, |ST err| = {err_st.round(5)}")
    assert np.all(err_s1 < 0.01), err_s1
    assert np.all(err_st < 0.01), err_st
    assert float(result.output_variance) == pytest.approx(v, rel=0.01)


def test_bootstrap_intervals_cover_the_closed_form(result):
    s1, st, _ = analytic()
    assert result.confidence == 0.95 and result.n_bootstrap == 200
    assert np.all(result.S1_conf > 0) and np.all(result.ST_conf > 0)
    # The i.i.d. bootstrap over quasi-random points is conservative: every interval covers the truth.
    assert np.all(np.abs(result.S1 - s1) <= result.S1_conf), (result.S1, result.S1_conf)
    assert np.all(np.abs(result.ST - st) <= result.ST_conf), (result.ST, result.ST_conf)


def test_second_order_interaction_x1_x3():
    _, _, v = analytic()
    res = sobol_indices(ishigami, [(-PI, PI)] * 3, n=2**13, second_order=True, seed=5)
    assert res.n_evaluations == 2**13 * 8
    s13 = (8 * B**2 * PI**8 / 225) / v
    assert res.S2[0, 2] == pytest.approx(s13, abs=0.01)
    assert abs(res.S2[0, 1]) < 0.01 and abs(res.S2[1, 2]) < 0.01
    assert np.isnan(res.S2[1, 0])
