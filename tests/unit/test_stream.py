"""Messy measurement streams: units, screening, duplicates, stream files (medtwin.core.stream, io.stream_file)."""

from __future__ import annotations

import io
import math
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.core.stream import Measurement, Rejection, Stream, convert, quantity, screen
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State
from medtwin.errors import ConsentError, DataError, DatasetError, UnitError
from medtwin.io import stream_file
from medtwin.io.access import OpenData
from medtwin.models import get_model

# Every record here is made up.
SYNTHETIC = OpenData("synthetic streams written in the tests")
read_stream = partial(stream_file.read_stream, access=SYNTHETIC)
write_stream = partial(stream_file.write_stream, access=SYNTHETIC)
HEADER = "time_h,kind,name,value,unit,duration_h,device,source_id,under_advice\n"


def _icu_model() -> Model:
    """A small model with the ICU glucose twin's units (independent of the library's icing)."""
    return Model(
        name="icu_units", description="unit fixture: glucose and insulin pools",
        states=(State("GLU", "mmol", "plasma glucose amount"), State("INS", "mU", "plasma insulin amount"),
                State("P1", "mmol", "stomach glucose")),
        parameters=(Parameter("k", "1/h", 0.1),),
        outputs=(Output("G", "mmol/L", lambda x, p: x[0] / 15.0), Output("I", "mU/L", lambda x, p: x[1] / 10.0)),
        dose_targets=(DoseTarget(1, "pn"), DoseTarget(2, "iv_insulin"), DoseTarget(3, "enteral")),
        vector_field=lambda t, x, p: (-p[0] * x[0], -p[0] * x[1], -p[0] * x[2]),
    )


@pytest.fixture(scope="module")
def icu():
    return _icu_model()


@pytest.fixture(scope="module")
def pk1():
    return get_model("pk1_iv")


# ---------------------------------------------------------------------------- units
@pytest.mark.parametrize("value, src, dst, substance, expected", [
    (90.0, "mg/dL", "mmol/L", "glucose", 900.0 / 180.156),          # 4.99567...
    (5.0, "mmol/L", "mg/dL", "glucose", 5.0 * 18.0156),
    (10.0, "µIU/mL", "pmol/L", "insulin", 60.0),
    (60.0, "pmol/L", "mU/L", "insulin", 10.0),
    (7.0, "uU/mL", "mU/L", None, 7.0),
    (7.0, "mIU/L", "μU/mL", None, 7.0),                              # Greek mu
    (1.0, "mg/L", "ng/mL", None, 1000.0),
    (1.0, "ug/mL", "mg/L", None, 1.0),
    (2.0, "g/L", "mg/L", None, 2000.0),
    (3.0, "mg/dL", "mg/L", None, 30.0),
    (1.0, "g", "mg", None, 1000.0),
    (250.0, "mcg", "mg", None, 0.25),
    (2.0, "mol", "mmol", None, 2000.0),
    (4.0, "U", "mU", None, 4000.0),
    (1.5, "U/h", "mU/h", None, 1500.0),
    (1.0, "mg/min", "mg/h", None, 60.0),
    (18.0156, "g", "mmol", "glucose", 100.0),
    (100.0, "mmol", "g", "glucose", 18.0156),
    (1.0, "mg/dL", "umol/L", "creatinine", 10000.0 / 113.12),       # 88.4 µmol/L per mg/dL
])
def test_convert_matches_hand_computed_values(value, src, dst, substance, expected):
    assert convert(value, src, dst, substance=substance) == pytest.approx(expected, rel=1e-12)


def test_ninety_mg_dl_is_4_9957_mmol_l():
    assert round(convert(90.0, "mg/dL", "mmol/L", substance="glucose"), 4) == 4.9957


def test_round_trip_conversion_is_identity():
    x = 123.456
    back = convert(convert(x, "mg/dL", "mmol/L", substance="glucose"), "mmol/L", "mg/dL", substance="glucose")
    assert back == pytest.approx(x, rel=1e-13)


@pytest.mark.parametrize("src, dst, substance, words", [
    ("mL/h", "mg/h", None, ["'mL/h'", "'mg/h'", "volume rate", "mass rate"]),
    ("mg/L", "mg", None, ["'mg/L'", "'mg'", "mass concentration", "mass"]),
    ("U/h", "mU", None, ["'U/h'", "'mU'", "activity rate", "activity"]),
    ("mg/dL", "mmol/L", None, ["'mg/dL'", "'mmol/L'", "mass concentration", "molar concentration", "substance"]),
    ("mg/dL", "mmol/L", "unobtainium", ["'mg/dL'", "'mmol/L'", "unobtainium"]),
    ("mU/L", "pmol/L", "glucose", ["'mU/L'", "'pmol/L'", "insulin"]),
    ("furlongs", "mg/L", None, ["'furlongs'", "'mg/L'", "unknown unit"]),
    ("mg/L", "mg/fortnight", None, ["'mg/fortnight'", "'mg/L'", "unknown unit"]),
])
def test_incompatible_or_unknown_units_are_refused_naming_both(src, dst, substance, words):
    with pytest.raises(UnitError) as info:
        convert(1.0, src, dst, substance=substance)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value, DataError)


def test_identical_units_need_no_table():
    assert convert(3.0, "%", "%") == 3.0
    assert quantity("mmol/L") == "molar concentration"


# ---------------------------------------------------------------------------- screening
UNITS = {"G": "mmol/L", "I": "mU/L"}
SUBSTANCES = {"G": "glucose", "I": "insulin"}


def test_screen_converts_and_keeps_the_original():
    r = screen([Measurement(1.0, "G", 90.0, "mg/dL", device="poc"), Measurement(2.0, "I", 60.0, "pmol/L")],
               UNITS, substances=SUBSTANCES)
    g, i = r.accepted
    assert (g.unit, g.original_unit, g.original_value) == ("mmol/L", "mg/dL", 90.0)
    assert g.value == pytest.approx(4.99567, abs=1e-5) and g.device == "poc"
    assert (i.value, i.unit) == (pytest.approx(10.0), "mU/L")
    assert g.key() == Measurement(1.0, "G", 90.0, "mg/dL", device="poc").key()  # key is the raw reading's


@pytest.mark.parametrize("m, words", [
    (Measurement(1.0, "HR", 80.0, "1/min"), ["unknown output 'HR'"]),
    (Measurement(1.0, "G", math.nan, "mmol/L"), ["non-finite value"]),
    (Measurement(1.0, "G", math.inf, "mmol/L"), ["non-finite value"]),
    (Measurement(1.0, "G", "ERR", "mmol/L"), ["non-numeric value 'ERR'"]),
    (Measurement(-0.5, "G", 5.0, "mmol/L"), ["time", ">= 0"]),
    (Measurement(math.nan, "G", 5.0, "mmol/L"), ["time"]),
    (Measurement(1.0, "G", -1.0, "mmol/L"), ["negative value"]),
    (Measurement(1.0, "G", 900.0, "mg/dL"), ["implausible", "received 900 mg/dL", "[0.5, 40]"]),
    (Measurement(1.0, "G", 5.0, "mg/L/h"), ["unit not convertible", "'mg/L/h'"]),
    (Measurement(1.0, "G", 5.0, "mL"), ["unit not convertible", "'mL'", "'mmol/L'", "volume"]),
])
def test_screen_rejects_with_a_reason(m, words):
    r = screen([m], UNITS, substances=SUBSTANCES, plausible={"G": (0.5, 40.0)})
    assert r.accepted == () and len(r.rejected) == 1
    assert r.rejected[0].item == m or m.value != m.value or m.time != m.time
    for word in words:
        assert word in r.rejected[0].reason


def test_screen_without_substance_rejects_mass_glucose():
    r = screen([Measurement(1.0, "G", 90.0, "mg/dL")], UNITS)
    assert "needs a substance" in r.rejected[0].reason and "'mg/dL'" in r.rejected[0].reason


def test_duplicates_dropped_within_a_batch_and_against_seen_keys_order_kept():
    a, b, c = (Measurement(t, "G", 5.0 + t, "mmol/L") for t in (3.0, 1.0, 2.0))
    first = screen([a, b, a, c, b], UNITS)
    assert first.accepted == (a, b, c) and first.duplicates == (a, b) and first.n_duplicates == 2
    again = screen([a, b, c], UNITS, seen_keys=first.seen_keys)
    assert again.accepted == () and again.rejected == () and again.n_duplicates == 3
    # the same reading from another device, or with another accession number, is not a duplicate
    other = screen([Measurement(3.0, "G", 8.0, "mmol/L", device="cgm"),
                    Measurement(3.0, "G", 8.0, "mmol/L", source_id="x")], UNITS, seen_keys=first.seen_keys)
    assert len(other.accepted) == 2


def test_a_rejected_reading_sent_again_is_a_duplicate_not_a_second_rejection():
    bad = Measurement(1.0, "G", math.nan, "mmol/L")
    first = screen([bad], UNITS)
    assert len(first.rejected) == 1
    assert screen([Measurement(1.0, "G", float("nan"), "mmol/L")], UNITS, seen_keys=first.seen_keys).n_duplicates == 1


def test_screen_refuses_non_measurements():
    with pytest.raises(DataError, match="Measurement"):
        screen([(1.0, "G", 5.0, "mmol/L")], UNITS)


_readings = st.builds(
    Measurement,
    time=st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, math.nan]),
    output=st.sampled_from(["G", "I", "X"]),
    value=st.sampled_from([0.0, 5.0, 90.0, -2.0, math.nan, math.inf]),
    unit=st.sampled_from(["mmol/L", "mg/dL", "mU/L", "pmol/L", "mL"]),
    device=st.sampled_from(["lab", "cgm"]),
    source_id=st.sampled_from(["", "a"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_readings, max_size=12), min_size=1, max_size=4))
def test_screening_batches_never_accepts_a_duplicate_and_never_loses_a_reading(batches):
    seen, accepted_keys, total = frozenset(), [], 0
    for batch in batches:
        r = screen(batch, UNITS, substances=SUBSTANCES, seen_keys=seen)
        # every reading is accounted for, in order
        assert len(r.accepted) + len(r.rejected) + r.n_duplicates == len(batch)
        for dup in r.duplicates:
            assert dup.key() in seen or sum(m.key() == dup.key() for m in batch) > 1
        assert all(rej.item.key() not in seen for rej in r.rejected)
        # idempotent: the same batch again accepts nothing new
        replay = screen(batch, UNITS, substances=SUBSTANCES, seen_keys=r.seen_keys)
        assert replay.accepted == () and replay.rejected == () and replay.n_duplicates == len(batch)
        accepted_keys += [m.key() for m in r.accepted]
        seen, total = r.seen_keys, total + len(batch)
    assert len(accepted_keys) == len(set(accepted_keys))
    distinct = {m.key() for batch in batches for m in batch}
    assert seen == distinct  # no distinct reading lost: each was accepted or rejected exactly once


# ---------------------------------------------------------------------------- Stream value
def test_stream_helpers_keep_arrival_order():
    ms = (Measurement(3.0, "G", 6.0, "mmol/L", device="cgm"), Measurement(1.0, "G", 5.0, "mmol/L"),
          Measurement(2.0, "G", 5.5, "mmol/L", device="cgm"), Measurement(1.0, "I", 9.0, "mU/L"))
    s = Stream(list(ms))
    assert s.measurements == ms
    assert [m.time for m in s.sorted_by_time()] == [1.0, 1.0, 2.0, 3.0]
    assert s.sorted_by_time()[0].output == "G"  # stable among equal times
    assert {d: [m.time for m in v] for d, v in s.by_device().items()} == {"cgm": [3.0, 2.0], "lab": [1.0, 1.0]}
    with pytest.raises(DataError):
        Stream(("not a measurement",))


# ---------------------------------------------------------------------------- files
ICU_TEXT = HEADER + (
    "0,infusion,pn,2.5,g/h,24,pump,,0\n"
    "0.5,obs,G,162,mg/dL,,poc,acc-17,0\n"
    "1,bolus,iv_insulin,2,U,,,,1\n"
    "1.25,obs,G,ERR,mmol/L,,cgm,,0\n"
    "1.5,infusion,INS,1.5,U/h,2,pump,,1\n"
    "2,obs,I,60,pmol/L,,lab,acc-18,1\n"
    "2.5,bolus,3,10,g,,,,0\n"
    "3,obs,G,,mmol/L,,cgm,,0\n"
)


def test_read_stream_icu_units(icu):
    s = read_stream(io.StringIO(ICU_TEXT), model=icu)
    assert [m.value for m in s.measurements] == [162.0, 60.0]
    assert [m.unit for m in s.measurements] == ["mg/dL", "pmol/L"]  # raw units kept
    assert s.measurements[0].device == "poc" and s.measurements[0].source_id == "acc-17"
    assert s.measurements[1].under_advice and not s.measurements[0].under_advice
    events = s.regimen.events
    pn, ins_bolus, ins_inf, enteral = events
    assert (pn.cmt, pn.rate, pn.amount) == (1, pytest.approx(2500.0 / 180.156), pytest.approx(24 * 2500.0 / 180.156))
    assert (ins_bolus.cmt, ins_bolus.amount, ins_bolus.rate) == (2, 2000.0, 0.0)
    assert (ins_inf.cmt, ins_inf.rate, ins_inf.amount) == (2, 1500.0, 3000.0)
    assert (enteral.cmt, enteral.amount) == (3, pytest.approx(10000.0 / 180.156))
    assert [(r.row, r.item["value"]) for r in s.rejected] == [(4, "ERR"), (8, "")]
    assert all("corrupt measurement value" in r.reason for r in s.rejected)
    r = screen(s.measurements, {"G": "mmol/L", "I": "mU/L"}, substances=SUBSTANCES)
    assert [round(m.value, 4) for m in r.accepted] == [round(162 / 18.0156, 4), 10.0]


def test_read_stream_with_library_icing_when_present():
    try:
        model = get_model("icing")
    except Exception:
        pytest.skip("the icing model is not in the library yet")
    s = read_stream(io.StringIO(ICU_TEXT), model=model)
    assert len(s.regimen) == 4 and len(s.measurements) == 2 and len(s.rejected) == 2


@pytest.mark.parametrize("body, row, column, words", [
    ("0,obs,C,1,mg/L\nx,obs,C,1,mg/L\n", 2, "time_h", ["'x'"]),
    ("1,bolus,iv,1,mL\n", 1, "unit", ["'mL'", "'mg'"]),
    ("1,infusion,iv,1,mL/h\n", 1, "unit", ["'mL/h'", "'mg/h'", "volume rate"]),
    ("1,infusion,iv,1,mg/h\n", 1, "duration_h", ["duration_h > 0"]),
    ("1,bolus,iv,abc,mg\n", 1, "value", ["'abc'"]),
    ("1,bolus,iv,-5,mg\n", 1, "value", ["negative amount"]),
    ("-1,bolus,iv,5,mg\n", 1, "time_h", ["negative time"]),
    ("1,bolus,iv,0,mg\n", 1, "value", ["AMT > 0"]),
    ("1,obs,C,5,\n", 1, "unit", ["needs its unit"]),
])
def test_malformed_rows_name_row_and_column(pk1, body, row, column, words):
    text = "time_h,kind,name,value,unit\n" + body
    if column == "duration_h":
        text = "time_h,kind,name,value,unit,duration_h\n" + body.replace("\n", ",0\n")
    with pytest.raises(DatasetError) as info:
        read_stream(io.StringIO(text), model=pk1)
    assert (info.value.row, info.value.column) == (row, column)
    message = str(info.value)
    assert message.startswith(f"row {row}, column {column}: ")
    for word in words:
        assert word in message


@pytest.mark.parametrize("body, row, column, words", [       # were whole-stream errors: now one rejected row each
    ("0,obs,C,1,mg/L\n1,measure,C,1,mg/L\n", 2, "kind", ["'measure'"]),
    ("1,obs,CE,1,mg/L\n", 1, "name", ["unknown output 'CE'"]),
    ("1,bolus,oral,1,mg\n", 1, "name", ["unknown dose target 'oral'"]),
    ("1,bolus,2,1,mg\n", 1, "name", ["unknown dose target '2'"]),
])
def test_a_row_with_unknown_kind_or_name_is_rejected_and_the_rest_proceeds(pk1, body, row, column, words):
    text = "time_h,kind,name,value,unit\n0,bolus,iv,500,mg\n" + body + "2,obs,C,8.5,mg/L\n"
    s = read_stream(io.StringIO(text), model=pk1)
    assert [r.row for r in s.rejected] == [row + 1]
    assert s.rejected[0].reason.startswith(f"column {column}: ")
    for word in words:
        assert word in s.rejected[0].reason
    assert [e.amount for e in s.regimen.events] == [500.0]
    assert [m.value for m in s.measurements][-1] == 8.5
    assert len(s.measurements) == (2 if body.startswith("0,obs") else 1)


def test_duplicate_dose_rows_are_dropped_and_reported(icu):
    insulin = "1.5,infusion,INS,2,U/h,2,pump,b-7,1\n"
    once = read_stream(io.StringIO(HEADER + "0,infusion,pn,2.5,g/h,24,pump,,0\n" + insulin), model=icu)
    twice = read_stream(io.StringIO(HEADER + "0,infusion,pn,2.5,g/h,24,pump,,0\n" + insulin + insulin), model=icu)
    assert twice.regimen == once.regimen and [e.rate for e in twice.regimen.events if e.cmt == 2] == [2000.0]
    assert [(d.row, d.reason.split(" (")[0]) for d in twice.duplicates] == [(3, "exact duplicate of dose row 2")]
    assert once.duplicates == ()
    two_bags = read_stream(io.StringIO(HEADER + insulin + insulin.replace("b-7", "b-8")), model=icu)
    assert [e.rate for e in two_bags.regimen.events] == [2000.0, 2000.0] and two_bags.duplicates == ()


def test_missing_column_and_bad_row_length(pk1):
    with pytest.raises(DatasetError) as info:
        read_stream(io.StringIO("time_h,kind,name,value\n0,obs,C,1\n"), model=pk1)
    assert info.value.column == "unit" and info.value.row is None
    with pytest.raises(DatasetError) as info:
        read_stream(io.StringIO("time_h,kind,name,value,unit\n0,obs,C,1\n"), model=pk1)
    assert info.value.row == 1
    with pytest.raises(DatasetError, match="empty"):
        read_stream(io.StringIO(""), model=pk1)


def test_dose_targets_by_cmt_state_and_route(pk1):
    text = "time_h,kind,name,value,unit\n0,bolus,1,1,g\n1,bolus,CENTRAL,2,mg\n2,bolus,iv,3,\n3,bolus,central,4,mg\n"
    s = read_stream(io.StringIO(text), model=pk1)
    assert [(e.cmt, e.amount) for e in s.regimen.events] == [(1, 1000.0), (1, 2.0), (1, 3.0), (1, 4.0)]


def test_write_read_round_trip(icu, tmp_path):
    s = read_stream(io.StringIO(ICU_TEXT), model=icu, patient="p-7")
    path = tmp_path / "stream.csv"
    write_stream(path, s, model=icu)
    back = read_stream(path, model=icu)
    assert back.patient == "p-7"
    assert back.measurements == s.measurements
    assert [r.item["value"] for r in back.rejected] == ["ERR", ""]
    assert len(back.regimen) == len(s.regimen)
    for e, f in zip(s.regimen.events, back.regimen.events):
        assert (e.time, e.cmt) == (f.time, f.cmt)
        assert f.amount == pytest.approx(e.amount, rel=1e-14) and f.rate == pytest.approx(e.rate, rel=1e-14)
    # and a second round trip is exact text
    first, second = io.StringIO(), io.StringIO()
    write_stream(first, back, model=icu)
    write_stream(second, read_stream(io.StringIO(first.getvalue()), model=icu), model=icu)
    assert first.getvalue() == second.getvalue()


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e6, allow_subnormal=False), st.sampled_from(["mg/L", "ng/mL"]),
                          st.sampled_from(["lab", "poc", "a b"]), st.text("abc-,\"", max_size=4), st.booleans()),
                max_size=10))
@settings(max_examples=60, deadline=None)
def test_measurement_round_trip_property(pk1, rows):
    s = Stream(tuple(Measurement(t, "C", v, u, device=d, source_id=sid, under_advice=adv)
                     for t, v, u, d, sid, adv in rows), Regimen.single(100.0, cmt=1, rate=50.0))
    out = io.StringIO()
    write_stream(out, s)
    assert read_stream(io.StringIO(out.getvalue()), model=pk1) == s


def test_write_refuses_what_a_row_cannot_express():
    s = Stream(regimen=Regimen((DoseEvent(time=0.0, amount=100.0, cmt=1, rate=-2),)))
    with pytest.raises(DataError, match="RATE"):
        write_stream(io.StringIO(), s)
    with pytest.raises(DataError, match="CMT"):
        write_stream(io.StringIO(), Stream(regimen=Regimen.single(5.0)))


class _Deny:
    def __init__(self):
        self.calls = []

    def authorize(self, patients, data_classes, operation):
        self.calls.append((list(patients), tuple(data_classes), operation))
        raise ConsentError(f"denied {operation} of {list(patients)}")


def test_access_is_required_and_asked_before_anything(pk1):
    text = "time_h,kind,name,value,unit,patient_id\n0,obs,C,1,mg/L,p1\n1,bolus,iv,5,mg,p1\n2,obs,C,x,y,p1\n"
    with pytest.raises(DataError, match="access"):
        stream_file.read_stream(io.StringIO(text), model=pk1, access=None)
    gate = _Deny()
    with pytest.raises(ConsentError):
        stream_file.read_stream(io.StringIO(text), model=pk1, access=gate)
    assert gate.calls == [(["p1"], ("observations", "medications"), "read")]
    # a malformed file is still denied first (an error message would quote its cells)
    with pytest.raises(ConsentError):
        stream_file.read_stream(io.StringIO(text.replace("0,obs", "zz,obs")), model=pk1, access=gate)
    with pytest.raises(DataError, match="patient"):
        stream_file.read_stream(io.StringIO("time_h,kind,name,value,unit\n0,obs,C,1,mg/L\n"), model=pk1,
                                access=_Deny())
    with pytest.raises(ConsentError):
        stream_file.write_stream(io.StringIO(), Stream((Measurement(0.0, "C", 1.0, "mg/L"),), patient="p1"),
                                 access=gate)
    assert gate.calls[-1] == (["p1"], ("observations",), "write")


def test_one_patient_per_stream(pk1):
    text = "time_h,kind,name,value,unit,patient_id\n0,obs,C,1,mg/L,p1\n1,obs,C,2,mg/L,p2\n"
    with pytest.raises(DatasetError) as info:
        read_stream(io.StringIO(text), model=pk1)
    assert (info.value.row, info.value.column) == (2, "patient_id")


def test_rejection_is_a_value():
    r = Rejection({"value": "ERR"}, "corrupt", row=3)
    assert r == Rejection({"value": "ERR"}, "corrupt", row=3)
