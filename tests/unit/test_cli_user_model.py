"""`medtwin reproduce --model-from module:ATTRIBUTE`: a run recorded on a user-defined model (defined in a small
module written here, not in the library) is re-executed bit for bit with that model, and refused without it or
with a changed definition.  The recorded result is checked against the closed form of a one-compartment bolus,
C = D/V·exp(-CL/V·t), and of its effect compartment, Ce = D/V·KE0/(KE0 - k)·(exp(-kt) - exp(-KE0·t))."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.core.events import Regimen

runner = CliRunner()

SOURCE = '''
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State


def _matrix(p):
    return ((-p[0] / p[1], 0.0), (p[2] / p[1], -p[2]))


def _concentration(x, p):
    return x[0] / p[1]


def _effect_site(x, p):
    return x[1]


MODEL = Model(
    name="cli_user_effect", description="1-compartment IV with an effect compartment (written by a test)",
    states=(State("CENTRAL", "mg", "central amount"), State("CE", "mg/L", "effect-site concentration")),
    parameters=(Parameter("CL", "L/h", 5.0, 1e-6, float("inf"), "log", "clearance"),
                Parameter("V", "L", 30.0, 1e-6, float("inf"), "log", "volume"),
                Parameter("KE0", "1/h", {ke0}, 1e-6, float("inf"), "log", "effect-site rate constant")),
    outputs=(Output("C", "mg/L", _concentration, "plasma concentration", linear=True),
             Output("CE", "mg/L", _effect_site, "effect-site concentration", linear=True)),
    dose_targets=(DoseTarget(1, "iv"),), linear_matrix=_matrix)
NOT_A_MODEL = 3
'''


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    (tmp_path / "medtwin_test_cli_models.py").write_text(SOURCE.format(ke0=0.7))
    (tmp_path / "medtwin_test_cli_models_changed.py").write_text(SOURCE.format(ke0=0.9))   # same name
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module("medtwin_test_cli_models")


def test_reproduce_a_run_on_a_user_model_from_the_command_line(user_modules, tmp_path):
    from medtwin import workflows
    from medtwin.models import list_models

    model = user_modules.MODEL
    assert model.name not in list_models()
    t = np.linspace(0.0, 12.0, 13)
    cl, v, ke0 = 6.5, 26.0, 0.7
    request = workflows.SimulateRequest(model, {"CL": [cl], "V": [v], "KE0": [ke0]}, Regimen.single(500.0), t,
                                        open_data="synthetic test patient")
    stores = workflows.open_stores()
    trajectory, record = workflows.run(request, stores, actor="alice")
    stores.engine.dispose()
    k = cl / v
    np.testing.assert_allclose(trajectory.output("C")[0], 500.0 / v * np.exp(-k * t), rtol=1e-9)
    np.testing.assert_allclose(trajectory.output("CE")[0],
                               500.0 / v * ke0 / (ke0 - k) * (np.exp(-k * t) - np.exp(-ke0 * t)), rtol=1e-9,
                               atol=1e-12)

    ok = runner.invoke(app, ["reproduce", record.run_id, "--model-from", "medtwin_test_cli_models:MODEL"])
    assert ok.exit_code == 0 and "bit-identical" in ok.output, ok.output
    by_file = runner.invoke(app, ["reproduce", record.run_id, "--model-from",
                                  f"{tmp_path / 'medtwin_test_cli_models.py'}:MODEL"])
    assert by_file.exit_code == 0 and "bit-identical" in by_file.output, by_file.output

    missing = runner.invoke(app, ["reproduce", record.run_id])
    assert missing.exit_code == 2 and "cli_user_effect" in missing.output, missing.output
    assert "not a library model" in missing.output and "--model-from" in missing.output
    changed = runner.invoke(app, ["reproduce", record.run_id, "--model-from",
                                  "medtwin_test_cli_models_changed:MODEL"])
    assert changed.exit_code == 2 and "definition changed" in changed.output, changed.output
    for reference, message in (("medtwin_test_cli_nowhere:MODEL", "cannot import"),
                               ("medtwin_test_cli_models:NOTHING", "has no attribute"),
                               ("medtwin_test_cli_models:NOT_A_MODEL", "not a medtwin Model"),
                               ("medtwin_test_cli_models", "expected module:ATTRIBUTE")):
        bad = runner.invoke(app, ["reproduce", record.run_id, "--model-from", reference])
        assert bad.exit_code == 2 and message in bad.output, (reference, bad.output)
