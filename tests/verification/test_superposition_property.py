"""Property-based checks (hypothesis): linearity and ADDL expansion of the event machinery."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin import DoseEvent, Regimen, get_model, simulate

TIMES = np.linspace(0.0, 72.0, 37)

dose = st.builds(
    lambda t, amt, rate, cmt: DoseEvent(time=t, amount=amt, rate=rate, cmt=cmt),
    st.floats(0.0, 60.0, allow_nan=False).map(lambda v: round(v, 3)),
    st.floats(1.0, 500.0),
    st.sampled_from([0.0, 0.0, 50.0, 400.0]),
    st.sampled_from([1, 2]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(dose, min_size=1, max_size=4), st.lists(dose, min_size=1, max_size=4))
def test_linear_model_superposition(first, second):
    """For a linear model the response to two regimens is the sum of the responses."""
    model = get_model("pk2_oral")
    params = {"KA": 0.9, "CL": 4.0, "V1": 25.0, "Q": 6.0, "V2": 50.0, "F1": 0.8, "ALAG1": 0.4}
    both = simulate(model, params, Regimen(tuple(first) + tuple(second)), TIMES).output("C")
    a = simulate(model, params, Regimen(tuple(first)), TIMES).output("C")
    b = simulate(model, params, Regimen(tuple(second)), TIMES).output("C")
    np.testing.assert_allclose(both, a + b, rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.floats(2.0, 24.0), st.floats(10.0, 300.0), st.sampled_from(["exact", "dopri5"]))
def test_addl_equals_explicit_records(addl, ii, amount, method):
    model = get_model("pk1_oral")
    compact = Regimen((DoseEvent(time=0.0, amount=amount, ii=ii, addl=addl),))
    explicit = Regimen(tuple(DoseEvent(time=k * ii, amount=amount) for k in range(addl + 1)))
    times = np.linspace(0.0, (addl + 2) * ii, 41)
    a = simulate(model, None, compact, times, method=method).output("C")
    b = simulate(model, None, explicit, times, method=method).output("C")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
