"""Bad input at the command line: one clear `error:` line, a non-zero exit, nothing written or stored.

Cheap by design: every command runs in-process (CliRunner), and where a refusal must come before any work the
work itself (opening the stores, personalizing, fitting) is replaced by a tripwire that fails the test.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.io.population_file import shipped_population_path
from test_cli_infer import _vancomycin_csv

runner = CliRunner()
POP = str(shipped_population_path("vancomycin_goti2018"))
OPEN = ["--open-data", "synthetic test data"]
SPEC = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
        "errors": {"C": {"model": "proportional", "proportional": 0.1}}}
CONTENT = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    "latin1": "ID,TIME,AMT,DV,Größe\n1,0,100,.,1\n".encode("latin-1"),
    "array": b"[1, 2, 3]\n",
    "empty": b"",
    "header": b"foo,bar\n1,2\n",
}


def _error_line(result) -> str:
    """The output is exactly one non-empty line, `error: ...`, with no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _runs(home_runner=runner) -> int:
    result = home_runner.invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    return int(result.output.split("(")[1].split()[0])


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _vancomycin_csv(good / "patient.csv")
    (good / "pk.csv").write_text("ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,3\n")
    (good / "twin.json").write_text(json.dumps(SPEC))
    (good / "stream.csv").write_text("time_h,kind,name,value,unit\n0,bolus,CENTRAL,100,mg\n1,obs,C,4,mg/L\n")
    bad = {}
    for kind, content in CONTENT.items():
        suffix = ".json" if kind == "array" else ".csv"
        path = tmp_path / f"bad-{kind}{suffix}"
        path.write_bytes(content)
        bad[kind] = path
    return good, bad


def _commands(good, out):
    """(name, argv with {} where the bad file goes) for every command that reads a file."""
    sim = ["simulate", "pk1_iv", "--out", str(out / "sim.csv"), *OPEN]
    return {
        "simulate --data": [*sim, "--data", "{}", "--param", "CL=2", "--param", "V=20"],
        "simulate --params": [*sim, "--data", str(good / "pk.csv"), "--params", "{}"],
        "personalize --population": ["personalize", "--population", "{}", "--data", str(good / "patient.csv"),
                                     "--out", str(out / "p"), *OPEN],
        "personalize --data": ["personalize", "--population", POP, "--data", "{}", "--out", str(out / "p"), *OPEN],
        "forecast --data": ["forecast", "--population", POP, "--data", "{}", "--out", str(out / "f"), *OPEN],
        "recommend --data": ["recommend", "--population", POP, "--data", "{}", "--out", str(out / "r"), *OPEN],
        "fit --data": ["fit", "vancomycin_goti2018", "--population", POP, "--data", "{}", "--out", str(out / "fit"),
                       *OPEN],
        "fit --population": ["fit", "vancomycin_goti2018", "--population", "{}", "--data",
                             str(good / "patient.csv"), "--out", str(out / "fit"), *OPEN],
        "replay spec": ["replay", "{}", "--stream", str(good / "stream.csv"), "--out", str(out / "rp"), *OPEN],
        "replay --stream": ["replay", str(good / "twin.json"), "--stream", "{}", "--out", str(out / "rp"), *OPEN],
        "consent add": ["consent", "add", "{}"],
    }


# Which bad contents make sense for which slot: a JSON array/header problem is a CSV header for CSV readers.
KINDS = ("binary", "latin1", "array", "empty", "header")


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_reading_command_answers_bad_files_with_one_line(files, tmp_path, kind):
    good, bad = files
    out = tmp_path / "out"
    out.mkdir()
    for name, argv in _commands(good, out).items():
        if kind == "header" and name in ("replay spec", "consent add", "personalize --population",
                                         "fit --population"):
            continue  # a CSV header in a YAML/JSON slot is the "not an object" case (array), tested there
        result = runner.invoke(app, [a.replace("{}", str(bad[kind])) for a in argv])
        assert result.exit_code == 2, (name, result.output)
        line = _error_line(result)
        assert bad[kind].name in line, (name, line)  # names the file the user gave
    assert not any(out.iterdir())  # nothing written
    assert _runs() == 0  # nothing stored


def test_the_error_names_what_is_wrong(files):
    good, bad = files
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(bad["binary"]), "--out", "x.csv", *OPEN])
    assert "binary" in _error_line(result)
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(bad["latin1"]), "--out", "x.csv", *OPEN])
    assert "not UTF-8" in _error_line(result) and "offset" in result.output
    result = runner.invoke(app, ["personalize", "--population", str(bad["array"]), "--data", "x", "--out", "o"])
    assert "--population" in result.output and "array" in _error_line(result)
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(bad["header"]), "--out", "x.csv", *OPEN])
    line = _error_line(result)
    assert "--data" in line and "column ID" in line and "'foo', 'bar'" in line
    huge = good / "huge.csv"
    with open(huge, "wb") as handle:  # sparse: nothing is written, nothing should be read
        handle.truncate(65 * 2**20)
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(huge), "--out", "x.csv", *OPEN])
    assert "64 MiB limit" in _error_line(result)


# ------------------------------------------------------------------ --out
def _bind_real_functions():
    """Import the modules that bind personalize() by name first, so that a tripwire never leaks into them."""
    for module in ("medtwin.scenarios.demo", "medtwin.infer.validate", "medtwin.twin.adaptation"):
        importlib.import_module(module)


@pytest.fixture
def tripwires(monkeypatch):
    """Any real work (stores, personalization, fits, simulations, loops) fails the test."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the input was refused")

    _bind_real_functions()
    for module, name in (("medtwin.workflows.stores", "open_stores"), ("medtwin.cli.edge", "read_patient"),
                         ("medtwin.infer.personalize", "personalize"),
                         ("medtwin.scenarios.evaluation", "evaluate_vancomycin")):
        monkeypatch.setattr(importlib.import_module(module), name, boom)


def test_out_an_existing_non_empty_folder_is_refused_before_any_work(files, tmp_path, tripwires):
    good, _ = files
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("earlier results")
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    patient, pk = str(good / "patient.csv"), str(good / "pk.csv")
    commands = [
        ["personalize", "--population", POP, "--data", patient, *OPEN],
        ["forecast", "--population", POP, "--data", patient, *OPEN],
        ["recommend", "--population", POP, "--data", patient, *OPEN],
        ["fit", "vancomycin_goti2018", "--population", POP, "--data", patient, *OPEN],
        ["replay", str(good / "twin.json"), "--stream", str(good / "stream.csv"), *OPEN],
        ["closed-loop", "vancomycin", "--patients", "1"],
        ["demo", "--patients", "1"],
    ]
    for argv in commands:
        for target in (used, afile):
            result = runner.invoke(app, [*argv, "--out", str(target)])
            assert result.exit_code == 2, (argv[0], result.output)
            line = _error_line(result)
            assert "--out" in line and str(target) in line, line
    assert [p.name for p in used.iterdir()] == ["keep.txt"] and afile.read_text() == "x"
    # simulate's --out is a file: a folder is refused (an existing file would be replaced)
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", pk, "--param", "CL=2", "--out", str(used), *OPEN])
    assert result.exit_code == 2 and "--out" in _error_line(result)


def test_out_folder_refused_before_a_run_is_stored(files, tmp_path):
    good, _ = files
    used = tmp_path / "used"
    used.mkdir()
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(good / "pk.csv"), "--param", "CL=2",
                                 "--out", str(used), *OPEN])
    assert result.exit_code == 2, result.output
    assert _runs() == 0 and not any(used.iterdir())


def test_help_documents_the_out_rule_and_the_bounds():
    for argv, words in ((["personalize", "--help"], ["New (or empty) folder"]),
                        (["simulate", "--help"], ["not a folder"]),
                        (["forecast", "--help"], ["720"]),
                        (["recommend", "--help"], ["10,000", "exit status", "3"])):
        result = runner.invoke(app, argv, env={"COLUMNS": "400"})
        text = " ".join(result.output.split()).lower()
        for word in words:
            assert word.lower() in text, (argv, word)


# ------------------------------------------------------------------ magnitudes and numbers
def _simulate(tmp_path, text, *extra, model="pk1_iv"):
    data = tmp_path / "data.csv"
    data.write_text(text)
    out = tmp_path / "sim.csv"
    result = runner.invoke(app, ["simulate", model, "--data", str(data), "--out", str(out), *OPEN, *extra])
    return result, out


@pytest.mark.parametrize("text, words", [
    pytest.param("ID,TIME,AMT,DV\n1,0,1e308,.\n1,2,0,3\n", ["row 1", "column AMT", "1e+308"], id="AMT-1e308"),
    pytest.param("ID,TIME,AMT,DV\n1,0,100,.\n1,1e308,0,3\n", ["row 2", "column TIME", "1e+308"], id="TIME-1e308"),
    pytest.param("ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,1e308\n", ["row 2", "column DV"], id="DV-1e308"),
    pytest.param("ID,TIME,AMT,DV\n1,0,１０,.\n1,2,0,3\n", ["row 1", "column AMT", "１０"], id="AMT-fullwidth"),
    pytest.param("ID,TIME,AMT,DV,II,ADDL\n1,0,100,.,12,100000000\n1,2,0,3,0,0\n", ["row 1", "column ADDL"],
                 id="ADDL-1e8"),  # on the old main this expands 1e8 doses (minutes, GBs)
])
def test_dataset_cells_beyond_bounds_or_not_ascii_are_refused_with_row_and_column(tmp_path, text, words):
    result, out = _simulate(tmp_path, text, "--param", "CL=2", "--param", "V=20")
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert all(w in line for w in words), line
    assert not out.exists() and _runs() == 0


def test_covariate_cell_beyond_bounds_is_refused(tmp_path):
    text = "ID,TIME,AMT,RATE,DV,CRCL,WT,DIAL\n1,0,1000,1000,.,60,1e308,0\n1,12,0,0,10,60,1e308,0\n"
    result, _ = _simulate(tmp_path, text, model="vancomycin_goti2018")
    assert result.exit_code == 2 and "column WT" in _error_line(result)


def test_covariate_outside_the_models_physiological_range_is_refused(tmp_path):
    """A finite but impossible weight (5,000 kg) is refused by the model's declared covariate range."""
    text = "ID,TIME,AMT,RATE,DV,CRCL,WT,DIAL\n1,0,1000,1000,.,60,5000,0\n1,12,0,0,10,60,5000,0\n"
    result, out = _simulate(tmp_path, text, model="vancomycin_goti2018")
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "covariate WT = 5000 kg" in line and "outside the range [25, 300]" in line, line
    assert not out.exists() and _runs() == 0


@pytest.mark.parametrize("value, words", [("1e308", ["--param CL", "1e+09"]), ("１０", ["--param CL", "'１０'"]),
                                           ("-1", ["parameter CL", "-1.0", "outside its domain"])])
def test_param_values_beyond_bounds_or_not_ascii_are_refused(tmp_path, value, words):
    result, out = _simulate(tmp_path, "ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,3\n", "--param", f"CL={value}")
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert all(w in line for w in words) and "np.float64" not in line, line
    assert not out.exists() and _runs() == 0


@pytest.mark.parametrize("cell", ["1e308", "１０"])
def test_parameter_table_cells_are_read_strictly(tmp_path, cell):
    params = tmp_path / "params.csv"
    params.write_text(f"ID,CL,V\n1,{cell},20\n")
    result, out = _simulate(tmp_path, "ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,3\n", "--params", str(params))
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "--params" in line and "row 1, column CL" in line, line
    assert not out.exists() and _runs() == 0


@pytest.mark.parametrize("argv, option", [
    (["forecast", "--hours", "1e308"], "--hours"),
    (["forecast", "--hours", "721"], "--hours"),
    (["forecast", "--hours", "１０"], "--hours"),
    (["recommend", "--draws", "100000000"], "--draws"),
    (["recommend", "--draws", "10001"], "--draws"),
    (["recommend", "--max-dose", "２０００"], "--max-dose"),
    (["personalize", "--covariate", "WT=1e308"], "--covariate WT"),
    (["personalize", "--covariate", "WT=８０"], "--covariate WT"),
])
def test_options_beyond_their_bounds_or_not_ascii_are_refused_before_any_work(files, tmp_path, tripwires, argv,
                                                                              option):
    good, _ = files
    result = runner.invoke(app, [*argv, "--population", POP, "--data", str(good / "patient.csv"),
                                 "--out", str(tmp_path / "o"), *OPEN])
    assert result.exit_code == 2, result.output
    assert option in _error_line(result)
    assert not (tmp_path / "o").exists()


def test_consent_whose_period_ends_before_it_starts_is_refused(tmp_path):
    consent = {"resourceType": "Consent", "id": "c1", "status": "active", "decision": "permit",
               "subject": {"reference": "Patient/p1"}, "date": "2026-01-01",
               "period": {"start": "2026-06-01", "end": "2026-01-31"}}
    path = tmp_path / "consent.json"
    path.write_text(json.dumps(consent))
    result = runner.invoke(app, ["consent", "add", str(path)])
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "Consent.period.end" in line and "before it starts" in line
    shown = runner.invoke(app, ["consent", "show", "p1"])
    assert "(0)" in shown.output


# ------------------------------------------------------------------ option names, infeasibility
@pytest.mark.parametrize("argv, option, internal", [
    (["--max-dose", "100"], "--max-dose", "max_dose_mg"),
    (["--intervals", "8,x"], "--intervals", "could not convert"),
    (["--intervals", "0,12"], "--intervals", "intervals_h"),
    (["--max-daily", "100"], "--max-daily", "max_daily_mg"),
    (["--dose-step", "0"], "--dose-step", "dose_step_mg"),
    (["--target", "auc24:600-400"], "--target", "AUC24Window"),
    (["--objective", "best"], "--objective", "recommend_dose"),
    (["--method", "mcmc"], "--method", "METHODS"),
])
def test_recommend_errors_name_the_option_and_come_before_the_fit(files, tmp_path, tripwires, argv, option,
                                                                  internal):
    good, _ = files
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(good / "patient.csv"),
                                 "--out", str(tmp_path / "r"), *OPEN, *argv])
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert option in line and internal not in line, line


def test_infeasible_fallback_exits_3_and_still_writes_the_labelled_fallback(files, tmp_path, monkeypatch):
    import medtwin.cli.render
    import medtwin.control.dosing
    from medtwin.control.recommendation import Recommendation

    fallback = Recommendation(kind="regimen", action={"dose_mg": 250.0, "interval_h": 24.0},
                              status="infeasible-fallback", target={"name": "AUC24"},
                              probabilities={"target": 0.0, "toxic": 0.4},
                              message="P(toxic) 0.40 > 0.10 for every candidate")
    _bind_real_functions()
    monkeypatch.setattr(importlib.import_module("medtwin.infer.personalize"), "personalize", lambda *a, **k: None)
    monkeypatch.setattr(medtwin.cli.render, "print_posterior", lambda posterior: None)
    monkeypatch.setattr(medtwin.cli.render, "plot_recommendation", lambda r, d, path: path.write_bytes(b"png"))
    monkeypatch.setattr(medtwin.control.dosing, "recommend_dose", lambda *a, **k: fallback)
    good, _ = files
    out = tmp_path / "r"
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(good / "patient.csv"),
                                 "--out", str(out), *OPEN])
    assert result.exit_code == 3, result.output
    assert "FALLBACK, NOT A RECOMMENDATION" in result.output and "error: infeasible" in result.output
    assert json.loads((out / "recommendation.json").read_text())["status"] == "infeasible-fallback"


# ------------------------------------------------------------------ error lines are not wrapped
def test_usage_errors_and_long_errors_are_one_unwrapped_line_when_not_a_terminal(tmp_path):
    result = runner.invoke(app, ["simulate", "--bogus"])
    assert result.exit_code == 2
    assert "--bogus" in _error_line(result) and "╭" not in result.output
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    deep.mkdir()
    data = deep / "dataset-with-a-long-name.csv"
    data.write_text("foo,bar\n1,2\n")
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(data), "--out", str(tmp_path / "o.csv"),
                                 *OPEN])
    line = _error_line(result)
    assert str(data) in line and len(line) > 120


# ------------------------------------------------------------------ covariates the population needs
def test_a_missing_population_covariate_names_the_option_that_supplies_it(tmp_path, monkeypatch):
    _bind_real_functions()
    monkeypatch.setattr(importlib.import_module("medtwin.infer.personalize"), "personalize",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("fit started")))
    data = tmp_path / "patient.csv"
    data.write_text("ID,TIME,AMT,RATE,DV,EVID,CRCL,WT\n1,0,1000,1000,.,1,60,75\n1,11.5,0,0,12,0,60,75\n")
    result = runner.invoke(app, ["personalize", "--population", POP, "--data", str(data), "--out",
                                 str(tmp_path / "p"), *OPEN])
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "DIAL" in line and "--covariate DIAL=" in line and "haemodialysis" in line


def test_personalize_nuts_prints_rhat_and_ess():
    from medtwin.cli.render import print_posterior as _print_posterior
    from medtwin.core.data import PatientData
    from medtwin.infer.posterior import Posterior
    from medtwin.io.population_file import load_population
    from medtwin.core.events import Regimen

    population = load_population(POP)
    prior = population.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})
    rng = np.random.default_rng(0)
    draws = np.asarray(prior.log_mean) + 0.1 * rng.standard_normal((2, 50, 3))
    data = PatientData(Regimen.single(1000.0), np.array([2.0]), np.array([20.0]), {}, "C", patient="P7")
    from medtwin.models import get_model

    posterior = Posterior(model=get_model("vancomycin_goti2018"), prior=prior, method="nuts",
                          parameters=prior.parameters,
                          mean=draws.reshape(-1, 3).mean(0), covariance=np.eye(3) * 0.01, draws=draws, data=(data,),
                          prior_mean=np.asarray(prior.log_mean), prior_covariance=np.asarray(prior.covariance),
                          status="converged", message="max R-hat 1.0040, min bulk ESS 812, 0 divergent",
                          diagnostics={"rhat": np.array([1.001, 1.004, 1.002]), "ess": np.array([812.0, 900, 950]),
                                       "chains": 2, "draws": 50})
    import medtwin.cli.edge

    with medtwin.cli.edge.console.capture() as captured:
        _print_posterior(posterior)
    text = captured.get()
    assert "R-hat" in text and "ESS" in text and "1.004" in text and "812" in text


def test_population_file_format_is_documented_field_by_field():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "docs/population-file.md" in readme and "DIAL" in readme
    doc = (root / "docs" / "population-file.md").read_text()
    population = load_population_dict()
    fields = set(population) | {"lower", "upper", "fixed", "description", "reference", "condition", "clip",
                                 "form", "additive_sd", "proportional_sd", "occasion", "omega", "power",
                                 "exponential", "linear", "categorical", "combined", "proportional", "additive"}
    missing = sorted(f for f in fields if f"`{f}`" not in doc)
    assert not missing, missing


def load_population_dict():
    from medtwin.io.population_file import load_population

    return load_population(POP).to_dict()


# ------------------------------------------------------------------ streams
@pytest.mark.parametrize("rows, words", [
    pytest.param(["0,bolus,CENTRAL,100,mg", "1e308,obs,C,3,mg/L"], ["row 2, column time_h", "1e+308 h"], id="time"),
    pytest.param(["0,bolus,CENTRAL,1e308,mg", "1,obs,C,3,mg/L"], ["row 1, column value", "1e+308"], id="dose"),
    pytest.param(["0,bolus,CENTRAL,１００,mg", "1,obs,C,3,mg/L"], ["row 1, column value", "１００"], id="fullwidth"),
])
def test_replay_refuses_stream_rows_beyond_bounds(files, tmp_path, rows, words):
    good, _ = files
    stream = tmp_path / "stream.csv"
    stream.write_text("\n".join(["time_h,kind,name,value,unit", *rows]) + "\n")
    result = runner.invoke(app, ["replay", str(good / "twin.json"), "--stream", str(stream), "--out",
                                 str(tmp_path / "rp"), *OPEN])
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "--stream" in line and all(w in line for w in words), line
    assert not (tmp_path / "rp").exists()


def test_a_measurement_beyond_bounds_is_rejected_with_its_reason():
    import io

    from medtwin.io.access import OpenData
    from medtwin.io.stream_file import read_stream
    from medtwin.models import get_model

    text = "time_h,kind,name,value,unit\n0,bolus,CENTRAL,100,mg\n1,obs,C,1e308,mg/L\n2,obs,C,4,mg/L\n"
    data = read_stream(io.StringIO(text), model=get_model("pk1_iv"), access=OpenData("synthetic"), patient="P1")
    assert [m.value for m in data.measurements] == [4.0]
    assert [r.row for r in data.rejected] == [2] and "beyond the largest accepted" in data.rejected[0].reason


def test_a_population_theta_beyond_bounds_is_refused_with_the_field(files, tmp_path):
    good, _ = files
    text = shipped_population_path("pheno").read_text().replace("value: 0.00469555", "value: 1.0e+308")
    pop = tmp_path / "pop.yaml"
    pop.write_text(text)
    result = runner.invoke(app, ["personalize", "--population", str(pop), "--data", str(good / "pk.csv"), "--out",
                                 str(tmp_path / "p"), *OPEN])
    assert result.exit_code == 2, result.output
    assert "thetas.TVCL" in _error_line(result) and "1e+308" in result.output


def test_a_refused_run_leaves_nothing_half_written(files, tmp_path, monkeypatch):
    from medtwin.errors import ConsentError

    def denied(*args, **kwargs):
        raise ConsentError("write of the twin denied")

    monkeypatch.setattr(importlib.import_module("medtwin.io.twin_file"), "save_twin", denied)
    good, _ = files
    out = tmp_path / "rp"
    result = runner.invoke(app, ["replay", str(good / "twin.json"), "--stream", str(good / "stream.csv"), "--out",
                                 str(out), *OPEN, "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "write of the twin denied" in _error_line(result)
    assert not out.exists()  # tracked.csv, rejected.csv and alarms.json were written before the refusal: removed
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["replay", str(good / "twin.json"), "--stream", str(good / "stream.csv"), "--out",
                                 str(empty), *OPEN, "--no-progress"])
    assert result.exit_code == 2 and empty.is_dir() and not any(empty.iterdir())  # the user's empty folder stays


def test_simulate_stores_its_run_and_its_csv_together_or_neither(files, tmp_path, monkeypatch):
    """Point 6, nothing half-written: a refused CSV write stores no run; a failed store leaves no CSV."""
    from medtwin.errors import ConsentError, DataError

    good, _ = files
    out = tmp_path / "sim" / "out.csv"
    argv = ["simulate", "pk1_iv", "--data", str(good / "pk.csv"), "--param", "CL=2", "--param", "V=20",
            "--out", str(out), *OPEN, "--no-progress"]
    dataset_simulation = importlib.import_module("medtwin.io.dataset_simulation")
    write = dataset_simulation.write_simulation

    def denied(*args, **kwargs):
        raise ConsentError("write of the simulation denied")

    monkeypatch.setattr(dataset_simulation, "write_simulation", denied)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and "write of the simulation denied" in _error_line(result)
    assert _runs() == 0 and not out.exists()

    def store_fails(*args, **kwargs):
        raise DataError("the run store is unavailable")

    run_store = importlib.import_module("medtwin.governance.runs").RunStore
    save = run_store.save
    monkeypatch.setattr(dataset_simulation, "write_simulation", write)
    monkeypatch.setattr(run_store, "save", store_fails)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and "the run store is unavailable" in _error_line(result)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no CSV, no partial file
    monkeypatch.setattr(run_store, "save", save)  # (not undo(): that would also restore the private MEDTWIN_HOME)
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert out.exists() and _runs() == 1 and list(out.parent.iterdir()) == [out]
