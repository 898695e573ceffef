"""Measurement-stream files: read and write one patient's live stream as CSV.

One row per event, in arrival order::

    time_h,kind,name,value,unit,duration_h,device,source_id,under_advice
    0,infusion,pn,2.5,g/h,24,pump,,0
    0.5,obs,G,162,mg/dL,,poc,acc-17,0
    1,bolus,iv_insulin,2,U,,,,1

==============  ================================================================
column          meaning
==============  ================================================================
time_h          time, h, on the sending device's clock (required)
kind            ``obs``, ``bolus`` or ``infusion`` (required)
name            ``obs``: a model output (``model.output_names``); a dose: the
                target, as a CMT number, a state name or a dose-target route
name, value     (required) ``obs``: the measured value, kept as read (screening
                converts, :func:`medtwin.core.stream.screen`);
                ``bolus``: the amount; ``infusion``: the RATE per hour
unit            (required) ``obs``: the unit as measured (never empty); a dose:
                converted to the target state's unit (``U`` -> ``mU``, ``g`` of
                glucose -> ``mmol``); empty means the state's own unit;
                a volume (``mL/h``) is refused
duration_h      ``infusion`` only, > 0: amount = rate x duration
device          default ``lab``; source_id default empty; under_advice 0/1
patient_id      optional; one patient per file
==============  ================================================================

Malformed rows (missing column, unreadable time, unconvertible dose unit,
bad dose) raise a :class:`~medtwin.errors.DatasetError` naming the 1-based
data row and the column.  A row that is well formed but not for this model or
format -- an unknown ``kind``, output or dose target in ``name`` -- and a
corrupt *measurement value* (``NaN``, empty, ``ERR``, ``inf``) are not errors:
the row becomes a :class:`~medtwin.core.stream.Rejection` in
:attr:`Stream.rejected` with its row number and reason, and the valid rows
proceed, so nothing is lost and nothing corrupt enters a belief.

A dose row identical to an earlier one (same time, kind, target, amount or
rate, duration, device and ``source_id``) is a re-sent record: it is dropped
and listed in :attr:`Stream.duplicates` with its row number and the row it
repeats, as :func:`~medtwin.core.stream.screen` drops duplicate
measurements.  Two bags really given together carry different ``source_id``
values (or devices) and are both kept.

Both functions take the required ``access`` (see :mod:`medtwin.io.access`),
asked before anything is returned or written about the stream's patient
(``patient_id`` column or the ``patient`` argument) for the data classes the
file holds (``observations`` for obs rows, ``medications`` for doses).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Mapping

from medtwin.core.stream import MOLAR_MASS, Measurement, Rejection, Stream, convert
from medtwin.core.events import EVID_DOSE, DoseEvent, Regimen, validate_dose_fields
from medtwin.core.model import Model
from medtwin.errors import DataError, DatasetError, UnitError
from medtwin.io.access import OpenData, authorize
from medtwin.io.textfile import parse_number, read_text

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "KINDS", "read_stream", "write_stream"]

REQUIRED_COLUMNS = ("time_h", "kind", "name", "value", "unit")
OPTIONAL_COLUMNS = ("duration_h", "device", "source_id", "under_advice", "patient_id")
KINDS = ("obs", "bolus", "infusion")
_TRUE, _FALSE = {"1", "true", "yes", "y", "t"}, {"", "0", "false", "no", "n", "f"}


# ---------------------------------------------------------------------------- reading
def _read_text(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return read_text(source, what="stream file", allow_empty=True)
    text = source.read()
    return text.decode("utf-8-sig") if isinstance(text, bytes) else text


def _table(text: str) -> tuple[list[str], list[dict[str, str]], list[DatasetError]]:
    """Header (lower case), rows as column -> cell text, structural errors."""
    lines = [line for line in csv.reader(io.StringIO(text)) if line and any(c.strip() for c in line)]
    lines = [line for line in lines if not line[0].lstrip().startswith("#")]
    if not lines:
        return [], [], [DatasetError("the stream file is empty (no header line)")]
    header = [c.strip().lower() for c in lines[0]]
    errors = [DatasetError("required column is missing", column=c) for c in REQUIRED_COLUMNS if c not in header]
    errors += [DatasetError("duplicate column", column=c) for k, c in enumerate(header) if c in header[:k]]
    rows = []
    for k, cells in enumerate(lines[1:], start=1):
        if len(cells) != len(header):
            errors.append(DatasetError(f"{len(cells)} cells but the header names {len(header)} columns", row=k))
        cells = (cells + [""] * len(header))[: len(header)]
        rows.append({c: cell.strip() for c, cell in zip(header, cells)})
    return header, rows, errors


def _patient(rows, patient: str | None) -> tuple[list[str], list[DatasetError]]:
    ids = list(dict.fromkeys(r["patient_id"] for r in rows if r.get("patient_id")))
    errors = []
    if patient is not None and patient not in ids:
        ids.insert(0, str(patient))
    if len(ids) > 1:
        row = next((k for k, r in enumerate(rows, 1) if r.get("patient_id") and r["patient_id"] != ids[0]), None)
        errors.append(DatasetError(f"one stream holds one patient; found {ids}", row=row, column="patient_id"))
    return ids, errors


def _classes(rows, header) -> tuple[str, ...]:
    if "kind" not in header:
        return ("observations", "medications")
    kinds = {r["kind"].lower() for r in rows}
    classes = (["observations"] if kinds - {"bolus", "infusion"} else []) + (
        ["medications"] if kinds & {"bolus", "infusion"} else [])
    return tuple(classes)


def _check_access(access, patients: list[str], classes, operation: str) -> None:
    if not patients and not isinstance(access, OpenData):
        raise DataError("a stream of patient data needs its patient for the consent check: give patient= "
                        "or a patient_id column (or access=OpenData(reason) for non-identifiable data)")
    authorize(access, patients, classes, operation)


def _finite(cell: str) -> float | None:
    try:
        return parse_number(cell)  # ASCII digits only: "１０" is not a number
    except ValueError:
        return None


def _target(model: Model, name: str, row: int) -> int:
    """The CMT a dose row names (CMT number, state name or route); must accept doses."""
    dose_cmts = [t.cmt for t in model.dose_targets]
    cmt = None
    if name.isdigit():
        cmt = int(name)
    elif name in model.state_names:
        cmt = model.state_names.index(name) + 1
    else:
        by_route = [t.cmt for t in model.dose_targets if t.route == name]
        folded = [k + 1 for k, s in enumerate(model.state_names) if s.lower() == name.lower()]
        if len(by_route) > 1:
            raise DatasetError(f"route {name!r} is ambiguous (CMTs {by_route}); name the CMT", row=row, column="name")
        cmt = by_route[0] if by_route else (folded[0] if len(folded) == 1 else None)
    if cmt is None or cmt not in dose_cmts:
        routes = [t.route for t in model.dose_targets]
        targets = [f"{c} ({model.state_names[c - 1]})" for c in dose_cmts]
        raise DatasetError(f"unknown dose target {name!r}; model {model.name} doses CMT {targets}, routes {routes}",
                           row=row, column="name")
    return cmt


def _substance(model: Model, cmt: int, substances: Mapping[str, str] | None) -> str | None:
    state = model.states[cmt - 1]
    if substances and state.name in substances:
        return substances[state.name]
    text = f"{state.name} {state.description}".lower()
    found = [s for s in MOLAR_MASS if s in text]
    return found[0] if len(found) == 1 else None


def _dose(model: Model, r: dict, row: int, time: float, kind: str, substances) -> DoseEvent:
    cmt = _target(model, r["name"], row)
    value = _finite(r["value"])
    if value is None:
        raise DatasetError(f"a {kind} needs a finite number, got {r['value']!r}", row=row, column="value")
    state_unit = model.states[cmt - 1].unit
    target_unit = state_unit + "/h" if kind == "infusion" else state_unit
    try:
        value = convert(value, r["unit"] or target_unit, target_unit, substance=_substance(model, cmt, substances))
    except UnitError as exc:
        raise DatasetError(f"{kind} into {model.state_names[cmt - 1]}: {exc}", row=row, column="unit") from None
    amount, rate = value, 0.0
    if kind == "infusion":
        duration = _finite(r.get("duration_h", ""))
        if duration is None or duration <= 0:
            raise DatasetError(f"an infusion needs duration_h > 0, got {r.get('duration_h', '')!r}",
                               row=row, column="duration_h")
        amount, rate = value * duration, value
    problems = validate_dose_fields(time=time, amount=amount, cmt=cmt, rate=rate, ii=0.0, addl=0, ss=0,
                                    evid=EVID_DOSE)
    if problems:
        field_name, reason = problems[0]
        raise DatasetError(f"{kind}: {reason}", row=row, column="time_h" if field_name == "TIME" else "value")
    return DoseEvent(time=time, amount=amount, cmt=cmt, rate=rate)


#: Largest accepted time (h) and |value| of a stream row, as for a dataset (medtwin.io.nonmem).
MAX_TIME_H, MAX_VALUE = 1e6, 1e9


def _beyond_limits(r: dict, row: int) -> Rejection | None:
    """A time, dose or duration beyond the limits is a DatasetError; a measurement value beyond them a Rejection."""
    for column, limit, unit in (("time_h", MAX_TIME_H, " h"), ("duration_h", MAX_TIME_H, " h"),
                                ("value", MAX_VALUE, "")):
        number = _finite(r.get(column, ""))
        if number is None or abs(number) <= limit:
            continue
        reason = f"{number:g}{unit} is beyond the largest accepted magnitude {limit:g}{unit}"
        if column == "value" and r.get("kind", "").lower() == "obs":
            return Rejection(dict(r), f"measurement value of {r.get('name', '')}: {reason}", row=row)
        raise DatasetError(reason, row=row, column=column)
    return None


def _row(model: Model, r: dict, row: int, substances) -> Measurement | DoseEvent | Rejection:
    beyond = _beyond_limits(r, row)
    if beyond is not None:
        return beyond
    time = _finite(r["time_h"])
    if time is None:
        raise DatasetError(f"time must be a finite number of hours, got {r['time_h']!r}", row=row, column="time_h")
    kind = r["kind"].lower()
    if kind not in KINDS:
        return Rejection(dict(r), f"column kind: unknown kind {r['kind']!r}; use one of {list(KINDS)}", row=row)
    advice = r.get("under_advice", "").lower()
    if advice not in _TRUE | _FALSE:
        raise DatasetError(f"under_advice must be 0/1 (or true/false), got {r['under_advice']!r}",
                           row=row, column="under_advice")
    if kind != "obs":
        try:
            return _dose(model, r, row, time, kind, substances)
        except DatasetError as exc:
            if exc.column != "name":
                raise
            return Rejection(dict(r), f"column name: {exc.reason}", row=row)
    if r["name"] not in model.output_names:
        return Rejection(dict(r), f"column name: unknown output {r['name']!r}; model {model.name} observes "
                                  f"{list(model.output_names)}", row=row)
    if not r["unit"]:
        raise DatasetError(f"a measurement of {r['name']} needs its unit", row=row, column="unit")
    value = _finite(r["value"])
    if value is None:
        return Rejection(dict(r), f"corrupt measurement value {r['value']!r} of {r['name']}: not a finite number",
                         row=row)
    return Measurement(time=time, output=r["name"], value=value, unit=r["unit"], device=r.get("device") or "lab",
                       source_id=r.get("source_id", ""), under_advice=advice in _TRUE)


def read_stream(source, *, model: Model, access, patient: str | None = None,
                substances: Mapping[str, str] | None = None) -> Stream:
    """Read a measurement-stream CSV (format in the module docstring).

    Parameters
    ----------
    source : path or text/binary buffer
        The CSV file (header first; blank lines and lines starting with ``#`` skipped).
    model : Model
        Resolves output names, dose targets and the dose units.
    access : DataAccess
        Required (see :mod:`medtwin.io.access`); asked for a ``read`` of the
        patient's observations/medications before anything is returned or any
        cell is quoted in an error.
    patient : str, optional
        The stream's patient, when the file has no ``patient_id`` column;
        required unless ``access`` is :class:`~medtwin.io.access.OpenData`.
    substances : mapping, optional
        State name -> substance (:data:`~medtwin.core.stream.MOLAR_MASS`)
        for mass <-> molar dose conversion; by default a state whose name or
        description names exactly one known substance (``glucose``) uses it.

    Returns
    -------
    Stream
        Measurements in file (arrival) order with their raw units, the regimen
        of the dose rows (model units), the rejected rows (corrupt values,
        unknown kind/output/target) and the duplicate dose rows dropped.

    Raises
    ------
    ConsentError
        ``access`` denies the read.
    DatasetError
        The first malformed row in file order (``row`` 1-based, ``column`` named).

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.models import get_model
    >>> text = "time_h,kind,name,value,unit,duration_h\\n0,infusion,iv,0.5,g/h,2\\n1,obs,C,ERR,mg/L,\\n3,obs,C,8.5,ug/mL,\\n"
    >>> s = read_stream(io.StringIO(text), model=get_model("pk1_iv"), access=OpenData("synthetic"))
    >>> s.regimen.events[0].amount, s.regimen.events[0].rate, s.measurements[0].unit
    (1000.0, 500.0, 'ug/mL')
    >>> s.rejected[0].row, s.rejected[0].reason
    (2, "corrupt measurement value 'ERR' of C: not a finite number")
    >>> read_stream(io.StringIO("time_h,kind,name,value,unit\\n0,bolus,iv,5,mL\\n"),
    ...             model=get_model("pk1_iv"), access=OpenData("synthetic"))
    Traceback (most recent call last):
    ...
    medtwin.errors.DatasetError: row 1, column unit: bolus into CENTRAL: cannot convert 'mL' (volume) to 'mg' (mass): different quantities
    """
    if not isinstance(model, Model):
        raise DataError(f"read_stream needs a Model, got {type(model).__name__}")
    header, rows, errors = _table(_read_text(source))
    patients, patient_errors = _patient(rows, patient) if "patient_id" in header or patient else ([], [])
    _check_access(access, patients, _classes(rows, header), "read")
    if errors or patient_errors:
        raise (errors + patient_errors)[0]
    measurements, events, rejected, duplicates, dose_rows = [], [], [], [], {}
    for k, r in enumerate(rows, start=1):
        item = _row(model, r, k, substances)
        if isinstance(item, DoseEvent):
            key = (item, r["kind"].lower(), r.get("device", ""), r.get("source_id", ""))
            if key in dose_rows:
                duplicates.append(Rejection(dict(r), f"exact duplicate of dose row {dose_rows[key]} (same time, "
                                                     "target, amount/rate, duration, device, source_id): dropped",
                                            row=k))
                continue
            dose_rows[key] = k
        target = measurements if isinstance(item, Measurement) else events if isinstance(item, DoseEvent) else rejected
        target.append(item)
    return Stream(tuple(measurements), Regimen(tuple(events)), tuple(rejected),
                  patient=patients[0] if patients else None, duplicates=tuple(duplicates))


# ---------------------------------------------------------------------------- writing
def _fmt(x) -> str:
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return str(x)


def _dose_rows(stream: Stream, model: Model | None) -> list[dict[str, str]]:
    rows = []
    for e in stream.regimen.expanded():
        if e.evid != EVID_DOSE or e.ss != 0 or e.rate < 0:
            raise DataError(f"dose at t={e.time} h: a stream file holds plain boluses and infusions only "
                            f"(EVID 1, SS 0, RATE >= 0), got EVID {e.evid}, SS {e.ss}, RATE {e.rate}")
        cmt = e.cmt if e.cmt is not None else (model.default_cmt if model is not None else None)
        if cmt is None:
            raise DataError(f"dose at t={e.time} h has no CMT: give model= to write the model's default target")
        name, unit = (model.state_names[cmt - 1], model.states[cmt - 1].unit) if model is not None else (str(cmt), "")
        row = {"time_h": _fmt(e.time), "device": "", "source_id": "", "under_advice": "0"}
        if e.rate > 0:
            row.update(kind="infusion", name=name, value=_fmt(e.rate), unit=unit + "/h" if unit else "",
                       duration_h=_fmt(e.amount / e.rate))
        else:
            row.update(kind="bolus", name=name, value=_fmt(e.amount), unit=unit, duration_h="")
        rows.append(row)
    return rows


def _measurement_row(m: Measurement) -> dict[str, str]:
    return {"time_h": _fmt(m.time), "kind": "obs", "name": m.output, "value": _fmt(m.value), "unit": m.unit,
            "duration_h": "", "device": m.device, "source_id": m.source_id,
            "under_advice": "1" if m.under_advice else "0"}


def write_stream(path, stream: Stream, *, access, model: Model | None = None) -> None:
    """Write ``stream`` in the format :func:`read_stream` reads (for recording synthetic or live streams).

    Rows: the measurements in arrival order (current value and unit), then the
    doses (time order; state name and unit with ``model``, else the CMT number
    and an empty unit, meaning the state's own unit), then the rejected rows as
    they were read.  Floats are written with full precision (``repr``).

    Parameters
    ----------
    path : path or text buffer
        Destination.
    stream : Stream
        What to write; ``stream.patient`` becomes the ``patient_id`` column.
    access : DataAccess
        Required; asked for a ``write`` of the patient's data classes first.
    model : Model, optional
        Names dose targets by state and unit.

    Raises
    ------
    DataError
        A dose that a stream row cannot express (reset, steady state, modelled rate).

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.models import get_model
    >>> s = Stream((Measurement(2.0, "C", 8.1, "mg/L", source_id="a1"),), Regimen.single(500.0, cmt=1))
    >>> out = io.StringIO(); write_stream(out, s, access=OpenData("synthetic"))
    >>> print(out.getvalue(), end="")
    time_h,kind,name,value,unit,duration_h,device,source_id,under_advice
    2.0,obs,C,8.1,mg/L,,lab,a1,0
    0.0,bolus,1,500.0,,,,,0
    >>> read_stream(io.StringIO(out.getvalue()), model=get_model("pk1_iv"), access=OpenData("synthetic")) == s
    True
    """
    if not isinstance(stream, Stream):
        raise DataError(f"write_stream needs a Stream, got {type(stream).__name__}")
    rows = [_measurement_row(m) for m in stream.measurements] + _dose_rows(stream, model)
    for rejection in stream.rejected:
        item = rejection.item
        rows.append(_measurement_row(item) if isinstance(item, Measurement) else {k: str(v) for k, v in item.items()})
    classes = tuple(c for c, present in (
        ("observations", bool(stream.measurements) or any(r.get("kind", "obs").lower() == "obs" for r in rows)),
        ("medications", bool(stream.regimen.events))) if present)
    patients = [stream.patient] if stream.patient is not None else []
    _check_access(access, patients, classes, "write")
    columns = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS[:4]) + (["patient_id"] if patients else [])
    handle = open(path, "w", encoding="utf-8", newline="") if isinstance(path, (str, os.PathLike)) else path
    try:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([stream.patient if c == "patient_id" else row.get(c, "") for c in columns])
    finally:
        if handle is not path:
            handle.close()
