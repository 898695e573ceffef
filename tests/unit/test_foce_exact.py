"""Exact FOCEI gradients (medtwin.infer.foce_exact) against central differences of the numba objective."""

import io

import numpy as np
import pytest

from medtwin.core.observation import ResidualError
from medtwin.core.population import Population, Theta
from medtwin.infer.foce import _Objective, _Parametrisation, fit_focei
from medtwin.infer.foce_exact import exact_focei
from medtwin.infer.objective import Problem
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.models import get_model

ROWS = [(1, 4.6, 4.13, 2.9), (2, 5.5, 3.9, 2.8), (3, 4.1, 3.32, 2.0), (4, 5.2, 4.03, 3.3), (5, 4.4, 3.79, 2.5),
        (6, 5.0, 3.29, 2.1)]  # ID, C at 1, 3, 6 h after 100 mg IV


@pytest.fixture(scope="module")
def data():
    text = "ID TIME AMT DV\n" + "".join(f"{i} 0 100 0\n{i} 1 0 {c1}\n{i} 3 0 {c3}\n{i} 6 0 {c6}\n"
                                        for i, c1, c3, c6 in ROWS)
    return read_nonmem(io.StringIO(text), access=OpenData("synthetic records"))


def population(**changes):
    spec = dict(name="demo", model="pk1_iv",
                thetas=(Theta("TVCL", 2.0, "L/h", lower=0), Theta("TVV", 20.0, "L", lower=0)),
                typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=((0.1, 0.02), (0.02, 0.1)),
                residual=ResidualError("combined", additive=0.2, proportional=0.1))
    spec.update(changes)
    return Population(**spec)


def test_exact_gradient_matches_central_differences_of_the_numba_objective(data):
    pop = population()
    problem = Problem(pop, get_model("pk1_iv"), data)
    param = _Parametrisation(pop)
    reference = _Objective(problem, param, pop.residual)      # central differences of the numba simulation
    exact = _Objective(problem, param, pop.residual)
    exact.exact = exact_focei(problem)
    assert exact.exact is not None
    x = param.to_x(param.natural({"TVCL": 2.3, "TVV": 17.0}, np.array([[0.15, 0.03], [0.03, 0.08]]),
                                 {"additive": 0.05, "proportional": 0.02}))
    value, grad = exact.value_and_gradient(x)
    # independent reference: OFV of the numba path at x ± h e_k (tight inner tolerance), central differences
    h = 1e-5
    points = np.array([param.to_psi(x + s * h * e) for e in np.eye(len(x)) for s in (1.0, -1.0)])
    ofv, _ = reference.at_psi(np.vstack([param.to_psi(x)[None], points]), tol=1e-12)
    total = ofv.sum(axis=1)
    assert value == pytest.approx(total[0], abs=1e-6)
    np.testing.assert_allclose(grad, (total[1::2] - total[2::2]) / (2 * h), rtol=1e-4, atol=1e-4)


def test_exact_and_difference_fits_agree(data):
    proportional = ResidualError("proportional", proportional=0.1)  # identifiable on these 18 levels
    exact = fit_focei(population(residual=proportional), data, gradients="exact")
    differences = fit_focei(population(residual=proportional), data, gradients="differences")
    assert exact.converged and differences.converged
    assert exact.gradients == "exact" and differences.gradients == "differences"
    assert exact.ofv == pytest.approx(differences.ofv, abs=1e-4)
    np.testing.assert_allclose(exact.estimates, differences.estimates, rtol=2e-3)
    np.testing.assert_allclose(exact.se, differences.se, rtol=2e-2)


def test_estimated_dose_timing_takes_the_difference_path(data):
    model = get_model("pk1_oral")
    thetas = (Theta("TVCL", 2.0, "L/h", lower=0), Theta("TVV", 20.0, "L", lower=0), Theta("TVLAG", 0.1, "h", lower=0))
    estimated_lag = population(model="pk1_oral", thetas=thetas, typical={"CL": "TVCL", "V": "TVV", "ALAG1": "TVLAG"})
    assert exact_focei(Problem(estimated_lag, model, data)) is None          # ALAG estimated: the schedule moves
    assert exact_focei(Problem(population(model="pk1_oral"), model, data)) is not None  # ALAG fixed: exact path
