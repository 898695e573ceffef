"""Issue 20: a new ``medtwin`` process loads only what its command uses; simulate's ``out=`` / ``dtype=``."""

import subprocess
import sys

import numpy as np
import pytest

from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import SimulationError
from medtwin.models import get_model

HEAVY = ("numba", "jax", "pandas", "sqlalchemy", "alembic", "matplotlib", "scipy", "medtwin.core.kernels")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys; {code}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    return eval(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)


def test_the_command_line_and_medtwin_import_load_no_heavy_library():
    # `medtwin --help` imports medtwin.cli and builds the click group; the numerical stack loads with a command
    assert _loaded_after("import medtwin.cli; from medtwin.cli import app; import typer.main; "
                         "typer.main.get_command(app)") == []
    assert _loaded_after("import medtwin, medtwin.io, medtwin.io.jax_cache, medtwin.io.paths") == []
    # a lazy name still resolves to its object, and loads its module then
    assert {"medtwin.core.kernels", "numba"} <= set(_loaded_after("import medtwin; medtwin.simulate"))


def test_infer_reexports_stay_the_functions_after_their_submodules_load():
    import medtwin.infer
    import medtwin.infer.personalize
    import medtwin.infer.validate
    from medtwin.infer.personalize import personalize
    from medtwin.infer.validate import validate

    assert medtwin.infer.personalize is personalize and medtwin.infer.validate is validate
    assert {"fit_focei", "personalize", "Posterior"} <= set(dir(medtwin.infer))


def test_packaged_heads_match_alembic_and_the_fast_path_reads_the_version(tmp_path):
    from alembic.script import ScriptDirectory

    from medtwin.io.storage import _at_head, alembic_config, make_engine, packaged_heads, upgrade

    assert set(packaged_heads()) == set(ScriptDirectory.from_config(alembic_config()).get_heads())
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert not _at_head(engine)  # an empty database has no version table
    upgrade(engine)
    assert _at_head(engine)
    engine.dispose()


W1 = {"KA": np.array([0.8, 1.0, 1.4]), "CL": np.array([4.0, 5.0, 6.5]), "V1": 30.0, "Q": 8.0, "V2": 40.0}


def _w1(**options):
    times = np.arange(0.0, 49.0)
    return simulate(get_model("pk2_oral"), W1, Regimen.every(12, "h", 100, "mg", n=4), times, keep_states=False,
                    **options)


def test_out_buffer_is_written_in_place_and_reused():
    reference = _w1().output("C")
    buf = np.full((49, 1, 3), np.nan)
    first = _w1(out=buf)
    assert np.shares_memory(first.output("C"), buf)
    np.testing.assert_array_equal(first.output("C"), reference)
    buf[:] = -1.0  # reused: every entry written again
    np.testing.assert_array_equal(_w1(out=buf).output("C"), reference)


def test_float32_outputs_round_the_float64_solution():
    reference = _w1().output("C")
    single = _w1(dtype=np.float32).output("C")
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, reference, rtol=2e-7, atol=1e-30)
    np.testing.assert_array_equal(single, reference.astype(np.float32))
    # the general kernels compute float64 and return float32 too
    general = simulate(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, [Regimen.single(100.0)],
                       [np.array([0.0, 10.0])], dtype=np.float32, method="rk4", dt=0.01)
    assert general.output("C").dtype == np.float32


def test_out_and_dtype_are_refused_where_they_cannot_apply():
    with pytest.raises(SimulationError, match="shape"):
        _w1(out=np.empty((48, 1, 3)))
    with pytest.raises(SimulationError, match="C-contiguous"):
        _w1(out=np.empty((3, 1, 49)).transpose(2, 1, 0))
    with pytest.raises(SimulationError, match="float64 or float32"):
        _w1(dtype=np.int64)
    with pytest.raises(SimulationError, match="fast path"):  # per-patient times: the general kernel
        simulate(get_model("pk1_iv"), {"CL": [2.0, 3.0], "V": 20.0}, Regimen.single(100.0),
                 [np.array([1.0]), np.array([2.0])], out=np.empty((1, 1, 2)))
