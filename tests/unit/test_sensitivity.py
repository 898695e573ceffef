"""Sobol' sensitivity analysis: input checks, closed-form cases, model outputs, plots, reproducibility."""

import math

import numpy as np
import pytest
from scipy import stats

from medtwin.core.events import Regimen
from medtwin.errors import DataError, ParameterError, SimulationError
from medtwin.infer.sensitivity import SobolResult, model_sobol, plot_sobol, sobol_indices
from medtwin.models import get_model


def linear(c):
    c = np.asarray(c, dtype=float)
    return lambda X: X @ c


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": 1000}, "n"),
        ({"n": 1}, "n"),
        ({"n": 2.0**10}, "n"),
        ({"n_bootstrap": 1}, "n_bootstrap"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=rf"^{field}:"):
        sobol_indices(linear([1, 1]), [(0, 1), (0, 1)], **{"n": 2**6, **kwargs})


@pytest.mark.parametrize(
    "bounds, match",
    [
        ({"a": (1.0, 1.0)}, r"problem_or_bounds\['a'\]: range must be finite with low < high"),
        ({"a": (0.0, math.inf)}, r"problem_or_bounds\['a'\]"),
        ({"a": (2.0, 1.0)}, r"problem_or_bounds\['a'\]"),
        ({"a": "wide"}, r"problem_or_bounds\['a'\]: give a \(low, high\) range"),
        ({}, r"problem_or_bounds: needs at least one input"),
        ({"names": ["a", "a"], "bounds": [[0, 1], [0, 1]]}, r"problem_or_bounds: duplicate input names"),
        ({"names": ["a"], "bounds": [[0, 1], [0, 1]]}, r"problem_or_bounds: 1 names for 2 bounds"),
        (42, r"problem_or_bounds: give a SALib problem"),
    ],
)
def test_invalid_bounds_name_the_field(bounds, match):
    with pytest.raises(DataError, match=match):
        sobol_indices(lambda X: X.sum(axis=1), bounds, n=2**6, seed=1)


def test_bad_function_results_are_reported():
    with pytest.raises(DataError, match=r"^func: must be callable"):
        sobol_indices("f", [(0, 1)], n=2**6)
    with pytest.raises(DataError, match=r"^func: returned shape \(3,\)"):
        sobol_indices(lambda X: np.zeros(3), [(0, 1), (0, 1)], n=2**6, seed=1)
    with pytest.raises(DataError, match=r"^func: non-finite output for \d+ of 256 samples, first at x1="):
        sobol_indices(lambda X: np.where(X[:, 0] > 0.5, X[:, 1], np.nan), [(0, 1), (0, 1)], n=2**6, seed=1)
    with pytest.raises(DataError, match=r"^func: the output is constant"):
        sobol_indices(lambda X: np.ones(len(X)), [(0, 1), (0, 1)], n=2**6, seed=1)
    with pytest.raises(DataError, match=r"^output_names: 1 names for 2 outputs"):
        sobol_indices(lambda X: X, [(0, 1), (0, 1)], n=2**6, seed=1, output_names=["a"])


# ----------------------------------------------------------------------------- closed forms
def test_linear_model_first_order_is_c_squared_share():
    """y = Σ c_i x_i, x_i ~ U(0, 1) independent: V_i = c_i²/12, so S1_i = ST_i = c_i² / Σ c_j²."""
    c = np.array([1.0, 2.0, -3.0, 0.5])
    res = sobol_indices(linear(c), [(0.0, 1.0)] * 4, n=2**13, seed=11)
    expected = c**2 / np.sum(c**2)
    np.testing.assert_allclose(res.S1, expected, atol=0.005)
    np.testing.assert_allclose(res.ST, expected, atol=0.005)
    assert float(res.output_variance) == pytest.approx(np.sum(c**2) / 12, rel=0.01)
    assert res.names == ("x1", "x2", "x3", "x4") and res.S1.shape == (4,)


def test_distributions_and_salib_problem_forms():
    """Normal inputs: y = x1 + x2 with sd 1 and 3 gives S1 = (1/10, 9/10); the SALib dict form gives the same."""
    res = sobol_indices(linear([1, 1]), {"a": stats.norm(5, 1), "b": stats.norm(-2, 3)}, n=2**13, seed=3)
    np.testing.assert_allclose(res.S1, [0.1, 0.9], atol=0.01)
    assert float(res.output_variance) == pytest.approx(10.0, rel=0.02)
    problem = {"names": ["a", "b"], "bounds": [[5, 1], [-2, 3]], "dists": ["norm", "norm"]}
    res2 = sobol_indices(linear([1, 1]), problem, n=2**13, seed=3)
    np.testing.assert_allclose(res2.S1, [0.1, 0.9], atol=0.01)


def test_multi_output_shapes_and_constant_column():
    f = lambda X: np.column_stack([X[:, 0] + 2 * X[:, 1], X[:, 1], np.ones(len(X))])
    res = sobol_indices(f, {"u": (0, 1), "v": (0, 1)}, n=2**12, seed=2, output_names=["sum", "v", "const"])
    assert res.multi_output and res.S1.shape == (3, 2) and res.ST_conf.shape == (3, 2)
    np.testing.assert_allclose(res.indices("sum")["S1"], [0.2, 0.8], atol=0.01)
    np.testing.assert_allclose(res.indices(1)["ST"], [0.0, 1.0], atol=0.01)
    assert np.all(np.isnan(res.indices("const")["S1"]))
    with pytest.raises(DataError, match=r"^output: choose one of"):
        res.indices()
    frame = res.to_frame()
    assert len(frame) == 6 and set(frame.columns) == {"output", "input", "S1", "S1_conf", "ST", "ST_conf"}
    assert res.as_dict()["S1"][2] == [None, None]


def test_result_is_immutable_and_reproducible():
    f = lambda X: X[:, 0] * X[:, 1] + X[:, 2]
    a = sobol_indices(f, [(0, 1)] * 3, n=2**8, seed=99)
    b = sobol_indices(f, [(0, 1)] * 3, n=2**8, seed=99)
    c = sobol_indices(f, [(0, 1)] * 3, n=2**8, seed=100)
    for key in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.S1, c.S1)
    assert a.seed == 99
    with pytest.raises(ValueError):
        a.S1[0] = 1.0
    with pytest.raises(AttributeError):
        a.seed = 1  # frozen dataclass
    drawn = sobol_indices(f, [(0, 1)] * 3, n=2**8)
    again = sobol_indices(f, [(0, 1)] * 3, n=2**8, seed=drawn.seed)
    np.testing.assert_array_equal(drawn.ST_conf, again.ST_conf)
    assert isinstance(a, SobolResult)


# ----------------------------------------------------------------------------- model outputs
DOSE = 100.0  # mg
TIMES = np.linspace(0.0, 400.0, 4001)  # h; ≥ 20 half-lives for the slowest sample (k = 1/30 per h)


def test_model_sobol_auc_of_iv_bolus_against_dose_over_cl():
    """pk1_iv, single bolus: AUC(0-∞) = Dose/CL, independent of V, so S1_CL = ST_CL = 1 and S1_V = ST_V = 0.

    The same Sobol' design applied to the closed form Dose/CL gives the reference indices.
    """
    params = {"CL": (1.0, 3.0), "V": (10.0, 30.0)}
    res = model_sobol("pk1_iv", Regimen.single(DOSE), TIMES, params, summary="auc", n=2**10, seed=4)
    closed = sobol_indices(lambda X: DOSE / X[:, 0], params, n=2**10, seed=4)
    assert res.unit == "mg·h/L" and res.names == ("CL", "V") and res.output_names == ("auc",)
    assert res.n_evaluations == 2**10 * 4
    np.testing.assert_allclose(res.S1, closed.S1, atol=1e-3)
    np.testing.assert_allclose(res.ST, closed.ST, atol=1e-3)
    assert res.S1[0] == pytest.approx(1.0, abs=0.01) and res.ST[0] == pytest.approx(1.0, abs=0.01)
    assert abs(res.S1[1]) < 0.01 and abs(res.ST[1]) < 0.01
    # Var(Dose/CL) for CL ~ U(1, 3): E[1/CL²] - E[1/CL]² = 1/3 - (ln 3 / 2)².
    var = DOSE**2 * (1 / 3 - (math.log(3) / 2) ** 2)
    assert float(res.output_variance) == pytest.approx(var, rel=0.01)
    assert res.extra["model"] == "pk1_iv" and res.extra["summary"] == "auc"


def test_model_sobol_cmax_and_covariates():
    """Cmax after a bolus is Dose/V: all variance from V.  Vancomycin: CRCL drives the AUC through CL."""
    res = model_sobol(get_model("pk1_iv"), Regimen.single(DOSE), [0.0, 1.0],
                      {"CL": (1.0, 3.0), "V": (10.0, 30.0)}, summary="cmax", n=2**10, seed=1)
    assert res.unit == "mg/L" and abs(res.ST[0]) < 0.01 and res.S1[1] == pytest.approx(1.0, abs=0.01)
    vanco = model_sobol("vancomycin_goti2018", Regimen.every(12, "h", 1000, n=2, duration=1),
                        np.linspace(0, 24, 97), {"CRCL": (30.0, 120.0), "Q": (4.0, 9.0)},
                        covariates={"WT": 80.0}, summary="auc", n=2**8, seed=1)
    assert vanco.S1[0] > 0.8 and vanco.unit == "mg·h/L"


def test_model_sobol_trough_and_callable_summary():
    regimen = Regimen.every(12, "h", 500, n=2)
    with pytest.raises(DataError, match=r"^times: the trough time 12.0 h coincides with a dose"):
        model_sobol("pk1_iv", regimen, [0.0, 6.0, 12.0], {"CL": (1.0, 3.0)}, summary="ctrough", n=2**4, seed=1)
    res = model_sobol("pk1_iv", regimen, [0.0, 6.0, 11.99], {"CL": (1.0, 3.0), "V": (10.0, 30.0)},
                      summary="ctrough", n=2**8, seed=1)
    assert res.unit == "mg/L" and np.all(res.ST > 0.05)

    def mean_conc(times, values):
        return values.mean(axis=1)

    with pytest.raises(DataError, match=r"^summary_unit:"):
        model_sobol("pk1_iv", regimen, [0.0, 6.0], {"CL": (1.0, 3.0)}, summary=mean_conc, n=2**4, seed=1)
    res = model_sobol("pk1_iv", regimen, [0.0, 6.0], {"CL": (1.0, 3.0), "V": (10.0, 30.0)}, summary=mean_conc,
                      summary_unit="mg/L", n=2**6, seed=1)
    assert res.unit == "mg/L" and res.output_names == ("mean_conc",)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"parameters": {"KA": (1, 2)}}, ParameterError, r"^parameters: 'KA' is neither a parameter"),
        ({"parameters": {"CL": (-1.0, 2.0)}}, ParameterError, r"^parameters\['CL'\]: range \(-1.0, 2.0\) L/h leaves"),
        ({"parameters": {}}, ParameterError, r"^parameters: give a non-empty mapping"),
        ({"covariates": {"AGE": 40}}, ParameterError, r"^covariates: model pk1_iv has no covariate"),
        ({"summary": "cmin"}, DataError, r"^summary: choose one of"),
        ({"times": [[0, 1]]}, DataError, r"^times: need a 1-D array"),
        ({"times": [1.0]}, DataError, r"^times: an AUC needs at least two"),
        ({"n": 100}, DataError, r"^n: "),
    ],
)
def test_model_sobol_validation_names_the_field(kwargs, error, match):
    args = {"times": [0.0, 1.0, 2.0], "parameters": {"CL": (1.0, 3.0)}, "n": 2**4, "seed": 1, **kwargs}
    with pytest.raises(error, match=match):
        model_sobol("pk1_iv", Regimen.single(DOSE), args.pop("times"), args.pop("parameters"), **args)


def test_model_sobol_is_reproducible():
    args = ("pk1_iv", Regimen.single(DOSE), [0.0, 2.0, 8.0], {"CL": stats.lognorm(0.3, scale=2.0), "V": (10, 30)})
    a = model_sobol(*args, summary="auc", n=2**7, seed=8)
    b = model_sobol(*args, summary="auc", n=2**7, seed=8)
    np.testing.assert_array_equal(a.S1, b.S1)
    np.testing.assert_array_equal(a.ST_conf, b.ST_conf)


# ----------------------------------------------------------------------------- plot
def test_plot_sobol_bars_and_error_bars():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = sobol_indices(linear([1, 2, 3]), {"a": (0, 1), "b": (0, 1), "c": (0, 1)}, n=2**8, seed=1, unit="mg/L")
    fig, ax = plt.subplots()
    assert plot_sobol(res, ax=ax) is ax
    assert len(ax.patches) == 6  # S1 and ST bars for three inputs
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights[:3], res.S1)
    np.testing.assert_allclose(heights[3:], res.ST)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert "mg/L" in ax.get_title()
    plt.close(fig)
    multi = sobol_indices(lambda X: X[:, :2], [(0, 1)] * 2, n=2**6, seed=1)
    ax2 = plot_sobol(multi, output="y1")
    assert len(ax2.patches) == 4
    plt.close(ax2.figure)


def test_model_sobol_reports_failed_samples():
    with pytest.raises(SimulationError, match=r"^\d+ of 64 samples failed \{'MAX_STEPS': \d+\}; first at CL="):
        model_sobol("pk1_iv", Regimen.single(DOSE), [0.0, 10.0], {"CL": (1.0, 3.0), "V": (10.0, 30.0)}, n=2**4,
                    seed=1, simulate_options={"method": "dopri5", "max_steps": 1})
