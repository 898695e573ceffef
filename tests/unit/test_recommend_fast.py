"""Issue 20 item 3 (helper ``recfast``): ``medtwin recommend`` without JAX for linear models, and the fast exit.

The NumPy path (:mod:`medtwin.core.linear_exact`, the Laplace engine ``"numpy"`` of
:func:`medtwin.infer.personalize.personalize`) is compared with independent references (predictions with
``simulate``, derivatives with 4th-order central differences) and with the JAX path it replaces (the
−log posterior and its gradient, and the whole Laplace posterior).
"""

import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from medtwin.core.data import PatientData
from medtwin.core.events import Regimen
from medtwin.core.linear_exact import complex_step_applies, linear_steps, outputs_and_log_derivatives
from medtwin.errors import DataError
from medtwin.io.population_file import load_population, shipped_population_path
from medtwin.models import get_model

personalize_module = importlib.import_module("medtwin.infer.personalize")
COVARIATES = {"CRCL": 45.0, "WT": 82.0, "DIAL": 0.0}


def _case(name):
    model = get_model(name)
    theta = model.typical_values()
    if "ALAG1" in model.parameter_names:  # a lag and a bioavailability below 1: dose times and amounts from θ
        theta[model.parameter_names.index("ALAG1")] = 0.5
        theta[model.parameter_names.index("F1")] = 0.8
    extra = {"duration": 1.0} if name == "vancomycin_goti2018" else {}
    regimen = Regimen.every(12.0, "h", 500.0, "mg", n=3, **extra)
    times = np.array([0.0, 0.75, 11.5, 12.0, 26.0, 40.0])
    return model, theta, regimen, times, np.flatnonzero(theta > 0)


@pytest.mark.parametrize("name", ["vancomycin_goti2018", "pk2_oral", "pk1_iv_emax"])
def test_numpy_outputs_equal_simulate_and_derivatives_central_differences(name):
    from medtwin.core.simulate import simulate

    model, theta, regimen, times, index = _case(name)
    steps = linear_steps(model, regimen, times, theta)
    f, d = outputs_and_log_derivatives(model, steps, theta, index)
    reference = simulate(model, dict(zip(model.parameter_names, theta)), regimen, times, keep_states=False)
    for o, out in enumerate(model.output_names):
        np.testing.assert_allclose(f[:, o], np.ravel(reference.output(out)), rtol=1e-10, atol=1e-12)
    # 4th-order central differences in log θ (dose times stay at the reference θ, as in the exact path)
    h = 1e-3
    for col, k in enumerate(index):
        def at(step):
            shifted = theta.copy()
            shifted[k] *= np.exp(step)
            return outputs_and_log_derivatives(model, steps, shifted, index[:0])[0]
        fd = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
        np.testing.assert_allclose(d[:, :, col], fd, rtol=1e-8, atol=1e-9 * np.abs(f).max())


def test_the_complex_step_check_refuses_a_non_analytic_output():
    ok, clipped = get_model("pk1_iv_emax"), get_model("pk1_iv_sigmoid_emax")  # the sigmoid clips C with abs()
    regimen, times = Regimen.single(100.0), [1.0, 5.0]
    for model, expected in ((ok, True), (clipped, False)):
        theta = model.typical_values()
        steps = linear_steps(model, regimen, times, theta)
        assert complex_step_applies(model, steps, theta, np.arange(theta.size)) is expected


def _fit(data, engine):
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    batches = data if isinstance(data, list) else [data]
    prior = population.prior_for({c: batches[-1].covariates[c] for c in population.covariates})
    model = get_model(population.model)
    return personalize_module._laplace(model, prior, batches, np.asarray(prior.log_mean, float),
                                       np.asarray(prior.covariance, float), engine=engine)


REGIMEN = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
CASES = {
    "two levels": PatientData(REGIMEN, times=[35.5, 38.0], values=[17.5, 38.0], covariates=COVARIATES),
    "a level below the LLOQ (M3)": PatientData(REGIMEN, times=[11.5, 35.5], values=[np.nan, 12.5],
                                               blq=[True, False], lloq=[5.0, 5.0], covariates=COVARIATES),
}  # the same padded shapes: one compilation of the JAX potential for both


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_numpy_laplace_fit_is_the_jax_posterior(case):
    fast, reference = _fit(CASES[case], "numpy"), _fit(CASES[case], "jax")
    assert fast.status == reference.status and fast.parameters == reference.parameters
    np.testing.assert_allclose(fast.mean, reference.mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.covariance, reference.covariance, rtol=1e-6)
    assert fast.diagnostics["objective"] == pytest.approx(reference.diagnostics["objective"], rel=1e-12)
    assert fast.diagnostics["iterations"] == reference.diagnostics["iterations"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_numpy_potential_and_gradient_equal_the_jax_ones(case):
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    prior = population.prior_for(COVARIATES)
    model, mean, cov = get_model(population.model), np.asarray(prior.log_mean, float), np.asarray(prior.covariance)
    arrays = [personalize_module._batch_arrays(model, prior, CASES[case])]
    fast = personalize_module._linear_value_grad(model, prior, arrays, mean, cov)
    args = personalize_module._args(model, prior, mean, cov, [personalize_module._on_device(a) for a in arrays])
    reference = personalize_module._jax_value_grad(model, args)
    for z in mean + np.random.default_rng(1).normal(scale=0.5, size=(3, mean.size)):
        (u, g), (u_ref, g_ref) = fast(z), reference(z)
        assert u == pytest.approx(u_ref, rel=1e-13)
        np.testing.assert_allclose(g, g_ref, rtol=1e-11, atol=1e-12 * np.abs(g_ref).max())


def test_auto_takes_numpy_for_the_linear_vancomycin_model_and_refuses_numpy_for_a_nonlinear_one():
    data = CASES["two levels"]
    np.testing.assert_array_equal(_fit(data, "auto").mean, _fit(data, "numpy").mean)
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    prior = population.prior_for(COVARIATES)
    with pytest.raises(DataError, match="numpy: linear models only"):
        personalize_module._laplace(get_model("pk1_iv_mm"), prior, [data], prior.log_mean, prior.covariance,
                                    engine="numpy")


def test_personalizing_a_linear_model_imports_no_jax():
    code = textwrap.dedent("""
        import sys
        from medtwin.core.data import PatientData
        from medtwin.core.events import Regimen
        from medtwin.infer.personalize import personalize
        from medtwin.io.population_file import load_population, shipped_population_path
        pop = load_population(shipped_population_path("vancomycin_goti2018"))
        data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0), times=[35.5, 38.0],
                           values=[17.5, 38.0], covariates={"CRCL": 45.0, "WT": 82.0, "DIAL": 0.0})
        post = personalize(pop, data, engine="auto")
        print(post.status, "jax" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["converged", "False"]


def test_the_library_default_is_the_jax_engine_and_the_workflow_operations_take_auto():
    """personalize() keeps the compiled JAX potential (fast when warm); the one-shot operations of the
    workflow layer take NumPy for a linear model; both give the same posterior to rounding."""
    from medtwin.workflows import engine as workflow_engine
    from medtwin.workflows.requests import PersonalizeRequest

    population = load_population(shipped_population_path("vancomycin_goti2018"))
    data = CASES["two levels"]
    assert workflow_engine.LAPLACE_ENGINE == "auto"
    library = personalize_module.personalize(population, data)
    np.testing.assert_array_equal(library.mean, _fit(data, "jax").mean)
    request = PersonalizeRequest(population=population, data=data, open_data="test")
    operation = workflow_engine._personalize(request, None)
    np.testing.assert_array_equal(operation.mean, _fit(data, "numpy").mean)
    with pytest.raises(DataError, match="engine must be one of"):
        personalize_module.personalize(population, data, engine="torch")


_APP = """
import atexit, sys
from pathlib import Path
from medtwin.cli.process import run_and_exit
marker = Path(sys.argv[1])
atexit.register(lambda: marker.write_text("atexit ran"))
def app():
    import gc
    assert gc.get_threshold() == (50_000, 20, 100)
    print("output before the end", end="")  # unflushed: the fast end must flush it
    if sys.argv[2] != "none":
        sys.exit(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
run_and_exit(app)
"""


@pytest.mark.parametrize(("code", "status"), [("none", 0), ("0", 0), ("3", 3), ("refused", 1)])
@pytest.mark.parametrize("switch", ["", "0"])
def test_the_fast_exit_keeps_status_output_and_atexit(tmp_path, code, status, switch):
    marker = tmp_path / "marker"
    env = {"MEDTWIN_FAST_EXIT": switch, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _APP, str(marker), code], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert done.returncode == status
    assert done.stdout == "output before the end"
    assert marker.read_text() == "atexit ran"
    assert done.stderr.strip() == ("refused" if code == "refused" else "")
