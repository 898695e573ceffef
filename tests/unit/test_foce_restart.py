"""fit_focei's restart from collapsed variances (foce._restart_collapsed) on a synthetic objective.

A variance that BFGS drove towards 0 has a vanishing gradient in the log-Cholesky coordinates even where raising
it lowers the objective; the restart puts it back at its initial value and keeps the better of both results.
"""

import numpy as np
import pytest
from scipy import optimize

from medtwin.core.observation import ResidualError
from medtwin.core.population import Population, Theta
from medtwin.infer import foce


def _population():
    return Population(name="restart", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
                                                              Theta("TVV", 20.0, "L", lower=0)),
                      typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=np.diag([0.1, 0.05]),
                      residual=ResidualError("proportional", proportional=0.1))


class _Quadratic:
    """OFV = Σ (ψ − ψ*)² / scale² in natural units: its minimum has ω²_CL = 0.2 (not 0)."""

    def __init__(self, param):
        self.param = param
        self.target = param.natural({"TVCL": 2.5, "TVV": 25.0}, np.diag([0.2, 0.04]), {"proportional": 0.02})
        self.scale = np.abs(self.target)

    def value_and_gradient(self, x):
        f = lambda z: float(np.sum(((self.param.to_psi(z) - self.target) / self.scale) ** 2))  # noqa: E731
        grad = np.array([(f(x + 1e-6 * e) - f(x - 1e-6 * e)) / 2e-6 for e in np.eye(len(x))])
        return f(x), grad


def test_collapsed_variance_is_restarted_and_the_better_result_kept():
    param = foce._Parametrisation(_population())
    objective = _Quadratic(param)
    psi0 = param.natural({"TVCL": 2.0, "TVV": 20.0}, np.diag([0.1, 0.05]), {"proportional": 0.01})
    stuck = param.to_x(param.natural({"TVCL": 2.5, "TVV": 25.0}, np.diag([1e-9, 0.04]), {"proportional": 0.02}))
    value, _ = objective.value_and_gradient(stuck)
    result = optimize.OptimizeResult(x=stuck, fun=value, nit=7, message="stopped", success=True)
    assert value == pytest.approx(1.0)  # (1e-9 - 0.2)² / 0.2²
    better = foce._restart_collapsed(objective, param, psi0, result, {"maxiter": 200, "gtol": 1e-8})
    assert better.fun < 1e-6 and better.nit > 7
    assert "OMEGA(1,1)" in better.message and "first run at 1.0000" in better.message
    assert param.unpack(param.to_psi(better.x))[1][0, 0] == pytest.approx(0.2, rel=1e-3)


def test_no_collapse_no_restart():
    param = foce._Parametrisation(_population())
    objective = _Quadratic(param)
    psi0 = param.natural({"TVCL": 2.0, "TVV": 20.0}, np.diag([0.1, 0.05]), {"proportional": 0.01})
    x = param.to_x(objective.target)
    result = optimize.OptimizeResult(x=x, fun=0.0, nit=3, message="done", success=True)
    assert foce._restart_collapsed(objective, param, psi0, result, {"maxiter": 5, "gtol": 1e-8}) is result

