"""Mass balance: dose in = amount in the body + amount eliminated, to 1e-8.

Each model is augmented, in the test, with one extra state that accumulates the
elimination flux written here independently from the library's vector field.
"""

import numpy as np
import pytest

from medtwin import Model, Regimen, State, get_model, simulate
from medtwin.core.events import DoseEvent


def with_eliminated(model: Model, flux) -> Model:
    def build(jit):
        f = model.rhs(jit)
        g = jit(flux)

        def augmented(t, x, p):
            return f(t, x, p) + (g(x, p),)

        return augmented

    def init_build(jit):
        x0 = model.init(jit)

        def init(p):
            return x0(p) + (0.0,)

        return init

    return model.with_changes(
        name=model.name + "_with_eliminated", build=build, vector_field=None, linear_matrix=None,
        init_build=init_build, initial_state=None,
        states=model.states + (State("ELIMINATED", "mg", "cumulative amount eliminated"),),
    )


FLUXES = {
    "pk1_iv": lambda x, p: p[0] / p[1] * x[0],
    "pk1_oral": lambda x, p: p[1] / p[2] * x[1],
    "pk2_iv": lambda x, p: p[0] / p[1] * x[0],
    "pk2_oral": lambda x, p: p[1] / p[2] * x[1],
    "pk3_iv": lambda x, p: p[0] / p[1] * x[0],
    "pk3_oral": lambda x, p: p[1] / p[2] * x[1],
    "pk1_iv_mm": lambda x, p: p[0] * (x[0] / p[2]) / (p[1] + x[0] / p[2]),
    "pk1_oral_mm": lambda x, p: p[1] * (x[1] / p[3]) / (p[2] + x[1] / p[3]),
    "pk2_iv_mm": lambda x, p: p[0] * (x[0] / p[2]) / (p[1] + x[0] / p[2]),
    "pk2_oral_mm": lambda x, p: p[1] * (x[1] / p[3]) / (p[2] + x[1] / p[3]),
    "pk1_oral_transit": lambda x, p: p[2] / p[3] * x[4],
}


@pytest.mark.parametrize("name", sorted(FLUXES))
def test_mass_balance(name):
    base = get_model(name)
    model = with_eliminated(base, FLUXES[name])
    cmt = base.default_cmt
    regimen = Regimen((
        DoseEvent(time=0.0, amount=400.0, cmt=cmt, ii=12.0, addl=3),
        DoseEvent(time=50.0, amount=600.0, cmt=cmt, rate=200.0),
    ))
    times = np.array([0.5, 6.0, 13.0, 37.0, 51.0, 52.5, 60.0, 96.0])
    tr = simulate(model, None, regimen, times, method="dopri5", rtol=1e-10, atol=1e-12)
    assert tr.ok
    f = 1.0
    if base.dose_target(cmt).bioavailability:
        f = base.parameter(base.dose_target(cmt).bioavailability).value
    lag = 0.0
    if base.dose_target(cmt).lag:
        lag = base.parameter(base.dose_target(cmt).lag).value
    given = np.array([
        sum(f * 400.0 for k in range(4) if 12.0 * k + lag <= t) + f * 600.0 * np.clip((t - 50.0 - lag) / 3.0, 0, 1)
        for t in times
    ])
    total = tr.states[:, :].sum(axis=1)
    np.testing.assert_allclose(total, given, rtol=1e-8, atol=1e-8 * given.max())
