"""Models' numba callbacks kept on disk by a process edge (medtwin.io.jax_cache.warm_model_callbacks,
medtwin.core.kernels.compile_callbacks(..., cache=True)).

The reference is the in-memory compilation (no folder): a simulation with callbacks compiled from the folder,
and with callbacks loaded back from numba's cache by a second model object, must equal it exactly.
"""

from __future__ import annotations

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State
from medtwin.core.simulate import model_callbacks, simulate
from medtwin.io.jax_cache import warm_model_callbacks
from medtwin.models import get_model

TIMES = np.linspace(0.0, 36.0, 13)


def _sim(model, method):
    regimen = Regimen.every(12.0, "h", 500.0, n=3, duration=1.0)
    return simulate(model, None, regimen, TIMES, method=method).output(model.outputs[0].name)


def _decay(rate_scale: float) -> Model:
    """A user model whose vector field closes over a constant: same source, different values."""
    def field(t, x, p):
        return (-rate_scale * p[0] * x[0],)

    return Model("decay", "first-order loss", (State("A", "mg"),), (Parameter("K", "1/h", 0.1, 1e-6),),
                 (Output("A", "mg", lambda x, p: x[0]),), (DoseTarget(1, "iv"),), vector_field=field)


def test_callbacks_from_the_folder_and_reloaded_equal_in_memory_ones(tmp_path):
    env = {"MEDTWIN_HOME": str(tmp_path)}
    for name, method in (("pk2_iv", "exact"), ("pk1_oral_mm", "dopri5")):
        reference = _sim(get_model(name).with_changes(), method)  # compiled in memory (no folder)
        first = get_model(name).with_changes()
        folder = warm_model_callbacks(first, env)
        sources = sorted(folder.glob("*.py"))
        np.testing.assert_array_equal(_sim(first, method), reference)
        second = get_model(name).with_changes()  # a new model object: its callbacks come from numba's cache
        assert warm_model_callbacks(second, env) == folder
        assert sorted(folder.glob("*.py")) == sources  # nothing new written
        assert model_callbacks(second)["rhs"] is not model_callbacks(first)["rhs"]
        np.testing.assert_array_equal(_sim(second, method), reference)
    assert len(list(folder.glob("*.py"))) == 2
    assert len(list((folder / "__pycache__").glob("*.nbi"))) == 4 + 3  # pk2_iv has a matrix callback


def test_same_source_other_closed_over_value_is_another_file(tmp_path):
    env = {"MEDTWIN_HOME": str(tmp_path)}
    slow, fast = _decay(1.0), _decay(3.0)
    assert slow.digest() == fast.digest()  # the digest reads the source only
    warm_model_callbacks(slow, env)
    warm_model_callbacks(fast, env)
    assert len(list((tmp_path / "numba-callbacks").glob("*.py"))) == 2
    a, b = _sim(slow, "dopri5"), _sim(fast, "dopri5")
    np.testing.assert_allclose(a, _sim(_decay(1.0), "dopri5"), rtol=0, atol=0)
    np.testing.assert_allclose(b, _sim(_decay(3.0), "dopri5"), rtol=0, atol=0)
    assert not np.allclose(a, b)


def test_switch_off_and_library_default_write_nothing(tmp_path):
    model = get_model("pk1_iv").with_changes()
    assert warm_model_callbacks(model, {"MEDTWIN_HOME": str(tmp_path), "MEDTWIN_COMPILE_CACHE": "0"}) is None
    model_callbacks(model)  # the library's own path: in memory
    assert not any(tmp_path.iterdir())
