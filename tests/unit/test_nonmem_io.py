"""NONMEM dataset reading, validation, simulation and writing (medtwin.io.nonmem)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from medtwin.core.events import DoseEvent
from medtwin.errors import DatasetError, ParameterError, SimulationError
from functools import partial

from medtwin.io import nonmem
from medtwin.io.access import OpenData
from medtwin.io.dataset_simulation import simulate_dataset
from medtwin.io.dataset_simulation import write_simulation as _write_simulation
from medtwin.io.nonmem import Dataset
from medtwin.models import get_model

# Every record in this module is made up; the consent gate itself is tested in
# tests/governance/test_data_access.py.
SYNTHETIC = OpenData("synthetic records written in the tests")
read_nonmem = partial(nonmem.read_nonmem, access=SYNTHETIC)
validate_nonmem = partial(nonmem.validate_nonmem, access=SYNTHETIC)
write_nonmem = partial(nonmem.write_nonmem, access=SYNTHETIC)
write_simulation = partial(_write_simulation, access=SYNTHETIC)

CL, V = 2.0, 20.0
K = CL / V


@pytest.fixture(scope="module")
def pk1():
    return get_model("pk1_iv")


def _csv(text: str) -> io.StringIO:
    return io.StringIO(text.strip() + "\n")


def _error(text: str, **kwargs) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        read_nonmem(_csv(text), **kwargs)
    return info.value


# ----------------------------------------------------------------------------- validation rules
def test_negative_time():
    e = _error("ID,TIME,AMT,DV\n1,0,100,.\n1,-2,0,3.1")
    assert (e.row, e.column) == (2, "TIME")
    assert "negative time" in str(e)


def test_time_going_backwards_within_an_id():
    e = _error("ID,TIME,AMT,DV\n1,0,100,.\n1,5,0,3.1\n1,4,0,3.0\n2,0,100,.")
    assert (e.row, e.column) == (3, "TIME")
    assert "backwards" in str(e) and "ID 1" in str(e)


def test_time_may_restart_for_a_new_id():
    ds = read_nonmem(_csv("ID,TIME,AMT,DV\n1,0,100,.\n1,5,0,3.1\n2,0,100,.\n2,1,0,4"))
    assert ds.ids.tolist() == [1, 2]


def test_amount_on_an_observation_record():
    e = _error("ID,TIME,AMT,DV,EVID\n1,0,100,.,1\n1,2,50,3.1,0")
    assert (e.row, e.column) == (2, "AMT")
    assert "observation" in str(e)


def test_amount_on_an_observation_record_inferred_from_mdv():
    e = _error("ID,TIME,AMT,DV,MDV\n1,0,100,.,1\n1,2,50,3.1,0")
    assert (e.row, e.column) == (2, "AMT")


def test_unknown_dose_compartment_with_model(pk1):
    text = "ID,TIME,AMT,DV,CMT\n1,0,100,.,1\n1,1,100,.,2\n1,2,0,3,1"
    e = _error(text, model=pk1)
    assert (e.row, e.column) == (2, "CMT")
    assert "not a dose compartment" in str(e)
    ds = read_nonmem(_csv(text))  # without a model the record is valid ...
    with pytest.raises(DatasetError) as info:  # ... until it meets one
        ds.check_against(pk1)
    assert (info.value.row, info.value.column) == (2, "CMT")
    with pytest.raises(DatasetError):
        simulate_dataset(pk1, ds)


def test_observation_compartment_must_be_a_state(pk1):
    e = _error("ID,TIME,AMT,DV,CMT\n1,0,100,.,1\n1,2,0,3,3", model=pk1)
    assert (e.row, e.column) == (2, "CMT")
    assert "not a state" in str(e)


def test_modelled_rate_needs_a_model_parameter(pk1):
    e = _error("ID,TIME,AMT,DV,RATE\n1,0,100,.,-1\n1,2,0,3,0", model=pk1)
    assert (e.row, e.column) == (1, "RATE")


def test_steady_state_without_interval():
    e = _error("ID,TIME,AMT,DV,SS,II\n1,0,100,.,1,0\n1,2,0,3,0,0")
    assert (e.row, e.column) == (1, "II")
    assert "SS" in str(e)


def test_non_numeric_cell_is_named():
    e = _error("ID,TIME,AMT,DV,WT\n1,0,100,.,70\n1,2,0,3.1,seventy")
    assert (e.row, e.column) == (2, "WT")
    assert "'seventy'" in str(e)


@pytest.mark.parametrize("evid", [5, -1, 1.5])
def test_evid_outside_0_to_4(evid):
    e = _error(f"ID,TIME,AMT,DV,EVID\n1,0,100,.,1\n1,2,0,3.1,{evid}")
    assert (e.row, e.column) == (2, "EVID")


def test_negative_rate_other_than_modelled():
    e = _error("ID,TIME,AMT,DV,RATE\n1,0,100,.,-3\n1,2,0,3.1,0")
    assert (e.row, e.column) == (1, "RATE")
    assert "-3" in str(e)


@pytest.mark.parametrize("missing", ["ID", "TIME"])
def test_missing_required_column(missing):
    columns = [c for c in ("ID", "TIME", "AMT", "DV") if c != missing]
    e = _error(",".join(columns) + "\n" + ",".join("1" for _ in columns))
    assert e.row is None and e.column == missing


def test_missing_dv_on_an_observation():
    e = _error("ID,TIME,AMT,DV,MDV\n1,0,100,.,1\n1,2,0,.,0")
    assert (e.row, e.column) == (2, "DV")
    # MDV=1 makes it a valid output-only record
    ds = read_nonmem(_csv("ID,TIME,AMT,DV,MDV\n1,0,100,.,1\n1,2,0,.,1"))
    assert ds.subjects[0].obs_evid.tolist() == [2]


@pytest.mark.parametrize("cell", ["inf", "-Infinity", "nan", "1e999"])
def test_non_finite_number(cell):
    e = _error(f"ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,{cell}")
    assert (e.row, e.column) == (2, "DV")
    assert "non-finite" in str(e)


def test_non_finite_number_in_a_dataframe():
    frame = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, np.inf], "AMT": [10.0, 0.0], "DV": [0.0, 1.0]})
    with pytest.raises(DatasetError) as info:
        read_nonmem(frame)
    assert (info.value.row, info.value.column) == (2, "TIME")


def test_records_of_an_id_must_be_contiguous():
    e = _error("ID,TIME,AMT,DV\n1,0,100,.\n2,0,100,.\n1,5,0,3")
    assert (e.row, e.column) == (3, "ID")


def test_dose_record_with_mdv_0():
    e = _error("ID,TIME,AMT,DV,EVID,MDV\n1,0,100,0,1,0")
    assert (e.row, e.column) == (1, "MDV")


def test_short_record():
    e = _error("ID,TIME,AMT,DV\n1,0,100,.\n1,2,0")
    assert e.row == 2 and "3 cells" in str(e)


def test_validate_lists_every_problem_in_file_order():
    text = "ID,TIME,AMT,DV,EVID\n1,0,100,.,1\n1,-1,0,3,0\n1,2,5,4,0\n1,3,0,x,7"
    problems = validate_nonmem(_csv(text))
    assert [(p.row, p.column) for p in problems] == [(2, "TIME"), (3, "AMT"), (4, "DV"), (4, "EVID")]
    with pytest.raises(DatasetError) as info:
        read_nonmem(_csv(text))
    assert (info.value.row, info.value.column) == (2, "TIME")  # the first one
    assert validate_nonmem(_csv("ID,TIME,AMT,DV\n1,0,100,.\n1,1,0,2")) == []


def test_validate_with_a_model_lists_model_problems(pk1):
    text = "ID,TIME,AMT,DV,CMT,RATE\n1,0,100,.,2,0\n1,1,100,.,1,-2\n1,2,0,3,5,0"
    problems = validate_nonmem(_csv(text), model=pk1)
    assert [(p.row, p.column) for p in problems] == [(1, "CMT"), (2, "RATE"), (3, "CMT")]
    assert validate_nonmem(_csv(text)) == []  # valid without a model


@pytest.mark.parametrize("text", ["", "# only a comment\n", "ID,TIME,AMT,DV\n", "ID TIME AMT DV WT\n"])
def test_empty_dataset(text):
    with pytest.raises(DatasetError, match="empty|no data records"):
        read_nonmem(io.StringIO(text))


def test_subject_lookup():
    ds = read_nonmem(_csv("ID,TIME,AMT,DV\n5,0,100,.\n5,1,0,2"))
    assert ds.subject(5).obs_dv.tolist() == [2.0] and len(ds) == 1
    with pytest.raises(DatasetError, match="ID 6"):
        ds.subject(6)


def test_column_names_are_case_insensitive_and_kept():
    e = _error("id,time,amt,dv,wt\n1,0,100,.,70\n1,-2,0,3,70")
    assert e.column == "time"
    ds = read_nonmem(_csv("id,time,amt,dv,wt\n1,0,100,.,70\n1,2,0,3,70"))
    assert ds.covariate_names == ("wt",) and ds.subjects[0].covariates == {"wt": 70.0}


# ----------------------------------------------------------------------------- covariates
def test_time_varying_covariate_is_noted_or_rejected():
    text = "ID,TIME,AMT,DV,WT\n1,0,100,.,70\n1,2,0,3,72\n2,0,100,.,60\n2,2,0,3,60"
    ds = read_nonmem(_csv(text))
    assert ds.subjects[0].covariates["WT"] == 70.0
    assert any("WT" in note and "first" in note for note in ds.notes)
    e = _error(text, strict_covariates=True)
    assert (e.row, e.column) == (2, "WT")


# ----------------------------------------------------------------------------- inference
PHENO_LIKE = """\
ID TIME AMT WGT APGR DV FA1 FA2
@ a comment record (IGNORE=@)
      1    0.    25.0    1.4      7      0      1 1
      1    2.0      0    1.4      7   17.3      0 0
# another comment
      1   12.5    3.5    1.4      7      0      1 1
      2    0.    15.0    1.5      9      0      1 1
      2    2.0      0    1.5      9    9.7      0 0
"""


def test_evid_and_mdv_inferred_on_a_pheno_like_whitespace_file(tmp_path):
    path = tmp_path / "pheno_like.dta"
    path.write_text(PHENO_LIKE)
    ds = read_nonmem(path)
    assert isinstance(ds, Dataset)
    assert ds.frame["EVID"].tolist() == [1, 0, 1, 1, 0]
    assert ds.frame["MDV"].tolist() == [1, 0, 1, 1, 0]
    assert set(ds.inferred) >= {"EVID", "MDV", "CMT", "RATE"}
    assert ds.covariate_names == ("WGT", "APGR", "FA1", "FA2")
    assert any("comment" in n and "2, 5" in n for n in ds.notes)  # file lines 2 and 5
    s1, s2 = ds.subjects
    assert s1.id == 1 and [e.amount for e in s1.regimen.events] == [25.0, 3.5]
    assert s1.regimen.events[0].cmt is None  # the model's default dose compartment
    assert s1.obs_times.tolist() == [2.0] and s1.obs_dv.tolist() == [17.3] and s1.obs_row.tolist() == [2]
    assert s1.dose_row.tolist() == [1, 3] and s2.rows.tolist() == [4, 5]
    assert s2.covariates == {"WGT": 1.5, "APGR": 9.0, "FA1": 1.0, "FA2": 1.0}
    assert any("FA1" in n for n in ds.notes)  # FA1 varies: noted, not silently simplified


def test_headerless_file_with_input_names():
    text = "ID TIME AMT DV\n1 0 100 0\n1 2 0 3.0\n"
    ds = read_nonmem(io.StringIO("1 0 100 0\n1 2 0 3.0\n"), columns=["ID", "TIME", "AMT", "DV"])
    assert ds.frame["EVID"].tolist() == [1, 0]
    ds2 = read_nonmem(io.StringIO(text), columns=["ID", "TIME", "AMT", "DV"])  # header ignored (IGNORE=@)
    assert ds2 == ds


def test_dropped_columns_are_noted():
    ds = read_nonmem(_csv("ID,TIME,AMT,DV,DATE\n1,0,100,.,2024-01-01\n1,2,0,3,2024-01-01"), drop=["DATE"])
    assert ds.covariate_names == () and any("DATE" in n for n in ds.notes)


# ----------------------------------------------------------------------------- events and simulation
def test_addl_ii_expansion(pk1):
    ds = read_nonmem(_csv("ID,TIME,AMT,DV,II,ADDL\n1,0,100,.,12,3\n1,40,0,1,0,0"))
    (event,) = ds.subjects[0].regimen.events
    assert (event.ii, event.addl) == (12.0, 3)
    assert [e.time for e in ds.subjects[0].regimen.expanded()] == [0.0, 12.0, 24.0, 36.0]
    tr = simulate_dataset(pk1, ds, {"CL": CL, "V": V})
    expected = sum(100 / V * math.exp(-K * (40 - td)) for td in (0, 12, 24, 36))
    assert tr.outputs["C"][0] == pytest.approx(expected, rel=1e-12)


def test_reset_records_evid_3_and_4(pk1):
    text = """ID,TIME,AMT,DV,EVID,MDV
1,0,100,.,1,1
1,5,0,.,3,1
1,6,0,1,0,0
1,10,50,.,4,1
1,12,0,1,0,0"""
    ds = read_nonmem(_csv(text))
    events = ds.subjects[0].regimen.events
    assert [e.evid for e in events] == [1, 3, 4]
    assert events[1] == DoseEvent(time=5.0, amount=0.0, evid=3)
    assert ds.subjects[0].dose_row.tolist() == [1, 2, 4]
    tr = simulate_dataset(pk1, ds, {"CL": CL, "V": V})
    c6, c12 = tr.outputs["C"]
    assert c6 == 0.0  # the reset emptied the body
    assert c12 == pytest.approx(50 / V * math.exp(-K * 2), rel=1e-12)  # only the post-reset dose
    tr_all = simulate_dataset(pk1, ds, {"CL": CL, "V": V}, records="all")
    assert tr_all.extra["row"].tolist() == [1, 2, 3, 4, 5]
    assert tr_all.extra["evid"].tolist() == [1, 3, 0, 4, 0]
    assert tr_all.outputs["C"][3] == pytest.approx(50 / V)  # after the EVID 4 dose


def test_pre_dose_ordering_matches_closed_form(pk1):
    text = """ID,TIME,AMT,DV,EVID,MDV
1,0,100,.,1,1
1,12,0,1,0,0
1,12,100,.,1,1
1,12,0,1,0,0"""
    ds = read_nonmem(_csv(text))
    subject = ds.subjects[0]
    assert subject.pre_dose.tolist() == [True, False]
    tr = simulate_dataset(pk1, ds, {"CL": CL, "V": V})
    before, after = tr.outputs["C"]
    trough = 100 / V * math.exp(-K * 12)
    assert before == pytest.approx(trough, rel=1e-12)  # the record before the dose sees the pre-dose state
    assert after == pytest.approx(trough + 100 / V, rel=1e-12)  # the record after it sees the bolus


def test_ambiguous_same_time_order_is_noted_and_warned():
    text = "ID,TIME,AMT,DV,EVID\n1,0,100,.,1\n1,0,0,3,0\n1,0,100,.,1"
    with pytest.warns(UserWarning, match="not representable"):
        ds = read_nonmem(_csv(text))
    assert any("between dose records" in n for n in ds.notes)


def test_parameters_matched_by_id(pk1):
    ds = read_nonmem(_csv("ID,TIME,AMT,DV\n7,0,100,.\n7,10,0,2\n3,0,50,.\n3,10,0,1"))
    table = pd.DataFrame({"ID": [3, 7, 99], "CL": [1.0, 2.0, 5.0], "V": [10.0, 20.0, 5.0]})
    tr = simulate_dataset(pk1, ds, table)
    assert tr.outputs["C"].tolist() == pytest.approx([100 / 20 * math.exp(-0.1 * 10), 50 / 10 * math.exp(-0.1 * 10)])
    assert tr.to_frame()["ID"].tolist() == [7, 3]
    with pytest.raises(DatasetError, match="ID 3"):
        simulate_dataset(pk1, ds, {"ID": [7], "CL": [2.0], "V": [20.0]})
    with pytest.raises(DatasetError, match="ID"):
        simulate_dataset(pk1, ds, pd.DataFrame({"CL": [1.0, 2.0]}))
    with pytest.raises(ParameterError, match="subject ID 3"):
        simulate_dataset(pk1, ds, {"ID": [7, 3], "CL": [2.0, -1.0]})


def test_parameters_from_covariates(pk1):
    ds = read_nonmem(_csv("ID,TIME,AMT,DV,WT\n1,0,100,.,50\n1,10,0,2,50\n2,0,100,.,100\n2,10,0,1,100"))
    tr = simulate_dataset(pk1, ds, lambda s: {"CL": 0.04 * s.covariates["WT"], "V": 0.4 * s.covariates["WT"]})
    assert tr.outputs["C"].tolist() == pytest.approx([100 / 20 * math.exp(-1), 100 / 40 * math.exp(-1)])


def test_simulate_dataset_refuses_overrides(pk1):
    ds = read_nonmem(_csv("ID,TIME,AMT,DV\n1,0,100,.\n1,10,0,2"))
    with pytest.raises(SimulationError, match="times"):
        simulate_dataset(pk1, ds, times=[1.0])


# ----------------------------------------------------------------------------- writing
ROUND_TRIP = """\
ID,TIME,AMT,DV,MDV,EVID,CMT,RATE,II,ADDL,SS,WT,SCR
1,0,100,.,1,1,1,50,12,2,0,70.5,0.9
1,0.5,0,3.25,0,0,.,0,0,0,0,70.5,0.9
1,30,0,.,1,2,1,0,0,0,0,70.5,.
1,36,0,.,1,3,.,0,0,0,0,70.5,0.9
1,40,200,.,1,4,1,0,24,0,1,70.5,0.9
2,0,0,.,1,1,1,10,0,0,1,80,1.1
2,5,0,0.123456789012345,0,0,1,0,0,0,0,80,1.1
"""


def test_round_trip(tmp_path):
    ds = read_nonmem(_csv(ROUND_TRIP))
    assert any("SCR" in n for n in ds.notes)
    path = tmp_path / "out.csv"
    write_nonmem(ds, path)
    back = read_nonmem(path)
    assert back == ds
    pd.testing.assert_frame_equal(back.to_frame(), ds.to_frame())
    assert back.subjects[1].obs_dv[0] == 0.123456789012345
    first = path.read_text().splitlines()[:2]
    assert first[0] == "ID,TIME,AMT,DV,MDV,EVID,CMT,RATE,II,ADDL,SS,WT,SCR"
    assert first[1] == "1,0.0,100,.,1,1,1,50,12,2,0,70.5,0.9"
    # a plain DataFrame is validated, then written
    buffer = io.StringIO()
    write_nonmem(pd.read_csv(_csv(ROUND_TRIP), na_values=["."]), buffer)
    assert read_nonmem(io.StringIO(buffer.getvalue())) == ds


def test_write_simulation(pk1, tmp_path):
    ds = read_nonmem(_csv("ID,TIME,AMT,DV\n4,0,100,.\n4,10,0,2\n4,20,0,1"))
    tr = simulate_dataset(pk1, ds, {"CL": CL, "V": V})
    path = tmp_path / "sim.csv"
    write_simulation(tr, path)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["ID", "TIME", "EVID", "ROW", "C"]
    assert frame["ID"].tolist() == [4, 4] and frame["ROW"].tolist() == [2, 3]
    assert frame["C"].tolist() == pytest.approx([5 * math.exp(-1), 5 * math.exp(-2)], rel=1e-15)
