"""personalize on nonlinear models: bounded compilations, sequential updates, the CLI.

The numerical reference (brute-force posterior) is in
tests/verification/test_personalize_nonlinear.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("diffrax", reason="nonlinear personalize needs jax and diffrax")

from medtwin.core.events import Regimen  # noqa: E402
from medtwin.core.observation import ResidualError  # noqa: E402
from medtwin.core.population import Population, Theta  # noqa: E402
from medtwin.infer.personalize import OBS_PAD, PatientData, _potential, personalize  # noqa: E402
from medtwin.models import get_model, list_models  # noqa: E402

REGIMEN = Regimen.every(12.0, "h", 600.0, "mg", n=3, duration=0.5)
TIMES = np.array([1.0, 4.0, 8.0, 11.5, 13.0, 20.0, 30.0, 31.0, 33.0])
VALUES = np.array([10.591, 8.813, 7.1, 5.101, 17.443, 12.949, 17.41, 20.1, 19.0])


def _population():
    return Population(name="mm-vmax-v", model="pk1_iv_mm",
                      thetas=(Theta("TVVMAX", 50.0, "mg/h", lower=0.0), Theta("TVKM", 5.0, "mg/L", lower=0.0),
                              Theta("TVV", 50.0, "L", lower=0.0)),
                      typical={"VMAX": "TVVMAX", "KM": "TVKM", "V": "TVV"}, iiv=("VMAX", "V"),
                      omega=((0.09, 0.02), (0.02, 0.09)),
                      residual=ResidualError("proportional", proportional=0.05, output="C"))


def test_patients_with_1_2_3_5_observations_share_one_compilation():
    model = get_model("pk1_iv_mm")
    pop = _population()
    _, value_grad = _potential(model)
    data = PatientData(REGIMEN, TIMES, VALUES, {})
    sizes, modes = [], []
    for j in (1, 2, 3, 5):
        post = personalize(pop, data.first(j), model=model)
        assert post.ok, post.message
        sizes.append(value_grad._cache_size())
        modes.append(post.mean)
    # one compiled potential gradient for 1-5 observations (padded to OBS_PAD, steps to 16)
    assert OBS_PAD >= 5 and sizes == [sizes[0]] * 4
    # more observations than the padding: exactly one more shape
    post = personalize(pop, data, model=model)
    assert post.ok and value_grad._cache_size() == sizes[0] + 1
    # the data move the estimate (the padded records do not enter the likelihood)
    assert len({tuple(np.round(m, 8)) for m in modes}) == 4


def test_a_laplace_posterior_of_a_nonlinear_model_updates_and_predicts():
    pop = _population()
    data = PatientData(REGIMEN, TIMES[:7], VALUES[:7], {})
    batch = personalize(pop, data)
    sequential = personalize(pop, data.first(4)).update(data.rest(4))
    assert batch.ok and sequential.ok and len(sequential.data) == 2
    # the Laplace chain (Gaussian day-1 posterior as the day-2 prior) is approximate for a nonlinear model:
    # within half a posterior SD of the batch fit here (measured: 0.28 SD)
    np.testing.assert_array_less(np.abs(sequential.mean - batch.mean), 0.5 * np.sqrt(np.diag(batch.covariance)))
    band = batch.predict(REGIMEN, [2.0, 40.0], n_draws=200)
    assert band.failed == 0 and np.all(np.isfinite(band.draws["C"]))


def test_cli_personalize_accepts_a_michaelis_menten_population(tmp_path):
    from typer.testing import CliRunner

    from medtwin.cli import app
    from medtwin.io.population_file import save_population

    pop_file = save_population(_population(), tmp_path / "mm.yaml")
    rows = [dict(ID=1, TIME=12.0 * k, AMT=600.0, RATE=1200.0, DV=".", EVID=1) for k in range(3)]
    rows += [dict(ID=1, TIME=t, AMT=0, RATE=0, DV=y, EVID=0) for t, y in zip(TIMES[:7], VALUES[:7])]
    data = tmp_path / "patient.csv"
    pd.DataFrame(rows).sort_values(["ID", "TIME"], kind="stable").to_csv(data, index=False)
    out = tmp_path / "p"
    result = CliRunner().invoke(app, ["personalize", "--population", str(pop_file), "--data", str(data), "--out",
                                      str(out), "--open-data", "synthetic test patients"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "posterior.csv")
    assert list(summary.parameter) == ["VMAX", "V"]
    # the CLI's estimate is the library's
    post = personalize(_population(), PatientData(REGIMEN, TIMES[:7], VALUES[:7], {}))
    np.testing.assert_allclose(summary["mode"], np.exp(post.mean), rtol=1e-6)


@pytest.mark.slow
def test_nuts_reuses_one_compiled_sampler_across_patients():
    from medtwin.infer.personalize import _nuts_program

    model = get_model("pk1_iv")
    pop = Population(name="pk1", model="pk1_iv",
                     thetas=(Theta("TVCL", 2.0, "L/h", lower=0.0), Theta("TVV", 20.0, "L", lower=0.0)),
                     typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL",), omega=((0.16,),),
                     residual=ResidualError("proportional", proportional=0.15))
    data = PatientData(Regimen.every(12.0, "h", 500.0, "mg", n=3, duration=0.5), [2.0, 11.9, 26.0, 30.0, 35.0],
                       [17.0, 4.1, 13.5, 9.0, 5.0], {})
    sizes = []
    for j in (1, 2, 3, 5):
        post = personalize(pop, data.first(j), method="nuts", chains=2, draws=20, warmup=20, seed=j)
        assert post.draws.shape == (2, 20, 1) and np.all(np.isfinite(post.draws))
        sizes.append(_nuts_program(model, 2, 20, 20)._cache_size())
    assert sizes == [sizes[0]] * 4


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if not get_model(n).is_linear])
def test_every_nonlinear_library_model_personalizes(name):
    from medtwin.core.simulate import simulate

    model = get_model(name)
    p = next(p for p in model.parameters if p.transform == "log" and p.value > 0)
    out = model.outputs[0]
    regimen = Regimen.every(12.0, "h", 100.0, "mg", n=2, cmt=model.default_cmt, duration=0.5)
    times = np.array([1.0, 6.0, 13.0, 20.0])
    y = simulate(model, {p.name: p.value * 1.2}, regimen, times).output(out.name)[0]
    residual = ResidualError("combined", additive=0.01 * max(np.abs(y).max(), 1e-3), proportional=0.1,
                             output=out.name, unit=out.unit)
    pop = Population(name="one", model=name, thetas=(Theta("TV", p.value, p.unit, lower=0.0),),
                     typical={p.name: "TV"}, iiv=(p.name,), omega=((0.1,),), residual=residual)
    post = personalize(pop, PatientData(regimen, times, y, {}))
    assert post.ok, post.message
    assert np.isfinite(post.mean).all() and post.covariance[0, 0] > 0


# ----------------------------------------------------------------------------- a user's own model
def _capacity_field(t, x, p):
    # one compartment, elimination saturating with the amount: dA/dt = -CL*C / (1 + C/C50), C = A/V
    cl, c50, v = p[0], p[1], p[2]
    c = x[0] / v
    return (-cl * c / (1.0 + c / c50),)


def _capacity_conc(x, p):
    return x[0] / p[2]


def test_a_user_defined_nonlinear_model_personalizes_without_the_library():
    from scipy.integrate import solve_ivp
    from scipy.optimize import minimize_scalar

    from medtwin.core.model import DoseTarget, Model, Output, Parameter, State

    model = Model(name="user_capacity_limited", description="user model", states=(State("A", "mg", "amount"),),
                  parameters=(Parameter("CL", "L/h", 4.0, 1e-6, 1e3, "log", "clearance at low C"),
                              Parameter("C50", "mg/L", 3.0, 1e-6, 1e3, "log", "half-saturation"),
                              Parameter("V", "L", 30.0, 1e-3, 1e3, "log", "volume")),
                  outputs=(Output("C", "mg/L", _capacity_conc, "concentration", linear=True),),
                  dose_targets=(DoseTarget(1, "iv"),), vector_field=_capacity_field)
    pop = Population(name="user", model=model.name, thetas=(Theta("TVCL", 4.0, "L/h", lower=0.0),),
                     typical={"CL": "TVCL"}, iiv=("CL",), omega=((0.2,),),
                     residual=ResidualError("proportional", proportional=0.1, output="C"))
    times, values = np.array([2.0, 8.0, 20.0]), np.array([9.0, 6.2, 3.1])
    post = personalize(pop, PatientData(Regimen.single(300.0), times, values, {}), model=model)
    assert post.ok, post.message

    def minus_log_posterior(z):  # the same posterior from scipy alone: solve_ivp (LSODA, rtol 1e-10)
        cl = np.exp(z)
        sol = solve_ivp(lambda t, a: -cl * (a / 30.0) / (1.0 + a / 30.0 / 3.0), (0.0, times[-1]), [300.0],
                        method="LSODA", t_eval=times, rtol=1e-10, atol=1e-12)
        f = sol.y[0] / 30.0
        return 0.5 * (z - np.log(4.0)) ** 2 / 0.2 + np.sum(0.5 * ((values - f) / (0.1 * f)) ** 2 + np.log(f))

    best = minimize_scalar(minus_log_posterior, bracket=(np.log(2.0), np.log(8.0)), tol=1e-10)
    assert abs(np.exp(post.mean[0] - best.x) - 1.0) < 1e-4
