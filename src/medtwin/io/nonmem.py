"""NONMEM-style datasets: read, validate, simulate and write.

A NONMEM dataset is a table with one *record* per row.  The columns this
module recognises (case-insensitively) are

=====  ======================================================================
ID     subject identifier (numeric); a subject's records must be contiguous
TIME   time, h; non-negative and non-decreasing within a subject
AMT    dose amount, mg (dose records only)
DV     observed value (observation records)
MDV    1: missing dependent variable (no observation to fit)
EVID   0 observation, 1 dose, 2 other (output only), 3 reset, 4 reset + dose
CMT    compartment (1-based state); missing or 0: the model's default
RATE   0 bolus, > 0 mg/h, -1 modelled rate (R1), -2 modelled duration (D1)
II     interdose interval, h
ADDL   number of additional doses every II
SS     0 none, 1 steady state (reset), 2 steady state added
=====  ======================================================================

Every other column is a covariate.  Absent columns take NONMEM's defaults:
EVID inferred (AMT > 0 or a steady-state infusion → 1; MDV = 1 → 2; else 0),
MDV from EVID, CMT "the model's default".  A ``.`` or empty cell is missing:
0 for AMT/RATE/II/ADDL/SS/EVID/MDV as in NONMEM, no value for DV/CMT/covariates.
A number is ASCII (``1.5``, ``2E3``, ``1D-2``; full-width ``１０`` is not 10) and
within the accepted magnitudes: TIME, II and the last ADDL dose <= 1e6 h,
AMT and RATE <= 1e9 (mg, mg/h), |DV| and |covariate| <= 1e9.

Validation is strict: every problem is a :class:`~medtwin.errors.DatasetError`
naming the 1-based data row (NONMEM's data record number: header and comment
lines excluded) and the column; :func:`read_nonmem` raises the first,
:func:`validate_nonmem` lists all.  Nothing is dropped: EVID 1/3/4 records
become :class:`~medtwin.core.events.DoseEvent` values of the subject's
:class:`~medtwin.core.events.Regimen`, EVID 0/2 records output times; comment
lines and simplifications (time-varying covariates) are listed in
:attr:`Dataset.notes`.  Each public function carries a runnable example.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from medtwin.core.events import DoseEvent, Regimen, validate_dose_fields
from medtwin.core.model import Model
from medtwin.errors import DatasetError
from medtwin.io.access import authorize
from medtwin.io.textfile import read_text

__all__ = [
    "STANDARD_COLUMNS", "Subject", "Dataset", "data_classes", "dataset_data_classes", "read_nonmem", "validate_nonmem",
    "write_nonmem",
]

STANDARD_COLUMNS = ("ID", "TIME", "AMT", "DV", "MDV", "EVID", "CMT", "RATE", "II", "ADDL", "SS")
_ZERO_DEFAULT = ("AMT", "RATE", "II", "ADDL", "SS", "EVID", "MDV")
_DOSING = ("AMT", "RATE", "II", "ADDL", "SS")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eEdD][+-]?\d+)?$", re.ASCII)  # "１０" is not a number
#: Largest accepted magnitudes: beyond them a value is a typo (or an attack), not a patient record.
MAX_TIME_H = 1e6  # TIME, II and the time of the last ADDL dose, h (about 114 years)
MAX_AMOUNT = 1e9  # AMT (mg) and RATE (mg/h)
MAX_VALUE = 1e9  # |DV| and |covariate| in any unit
_NON_FINITE = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


# ---------------------------------------------------------------------------- values
@dataclass(frozen=True, eq=False)
class Subject:
    """One subject (one ID) of a :class:`Dataset`.

    Attributes
    ----------
    id : int or float
        The ID (an int when integral).
    regimen : Regimen
        Every dose and reset record (EVID 1, 3, 4) in file order; ``dose_row``
        holds their 1-based data rows.
    obs_times, obs_dv, obs_evid, obs_mdv, obs_row : ndarray
        Time (h), DV (NaN where missing), EVID, MDV and 1-based data row of the
        EVID 0 and 2 records, in file order.
    pre_dose : ndarray of bool
        True where such a record precedes, in file order, a dose record with
        the same TIME: NONMEM applies records in file order, so it sees the
        pre-dose state.
    covariates : dict
        Covariate name -> the subject's first-record value.
    rows : ndarray of int
        1-based data rows of every record of the subject.
    """

    id: Any
    regimen: Regimen
    obs_times: np.ndarray
    obs_dv: np.ndarray
    obs_evid: np.ndarray
    obs_mdv: np.ndarray
    obs_row: np.ndarray
    pre_dose: np.ndarray
    covariates: Mapping[str, float]
    dose_row: np.ndarray
    rows: np.ndarray

    def __eq__(self, other):
        if not isinstance(other, Subject):
            return NotImplemented
        arrays = ("obs_times", "obs_dv", "obs_evid", "obs_mdv", "obs_row", "pre_dose", "dose_row", "rows")
        same = all(np.array_equal(getattr(self, a), getattr(other, a), equal_nan=a == "obs_dv") for a in arrays)
        covariates = pd.Series(self.covariates, dtype=float).equals(pd.Series(other.covariates, dtype=float))
        return same and covariates and self.id == other.id and self.regimen == other.regimen


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated NONMEM-style dataset.

    Attributes
    ----------
    frame : pandas.DataFrame
        The records as read (original column names, numbers; NaN for ``.``), with
        ``EVID`` and/or ``MDV`` appended when they were inferred.
    subjects : tuple of Subject
        One per ID, in file order.
    covariate_names : tuple of str
        Columns that are neither standard nor dropped.
    columns : dict
        Standard name (``"AMT"``) -> column name in ``frame`` (``"amt"``).
    inferred : tuple of str
        Standard columns that were absent and were inferred or defaulted.
    notes : tuple of str
        What was simplified or ignored (comment lines, time-varying covariates,
        same-time record orders the simulator cannot represent).
    """

    frame: pd.DataFrame
    subjects: tuple[Subject, ...]
    covariate_names: tuple[str, ...] = ()
    columns: Mapping[str, str] = field(default_factory=dict)
    inferred: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.subjects)

    def __eq__(self, other):
        if not isinstance(other, Dataset):
            return NotImplemented
        return self.subjects == other.subjects and self.to_frame().equals(other.to_frame())

    @property
    def ids(self) -> np.ndarray:
        """Subject IDs in file order."""
        return np.array([s.id for s in self.subjects])

    def subject(self, subject_id) -> Subject:
        """The subject with ID ``subject_id`` (raises DatasetError when absent)."""
        for s in self.subjects:
            if s.id == subject_id:
                return s
        raise DatasetError(f"no subject with ID {subject_id!r}", column="ID")

    def to_frame(self) -> pd.DataFrame:
        """Standard view: ID, TIME, AMT, DV, MDV, EVID, CMT, RATE, II, ADDL, SS + covariates.

        Defaults are applied (0 for absent dosing fields, inferred EVID/MDV);
        DV, CMT and covariates keep NaN for missing values.
        """
        std = _standard_arrays(self.frame, self.columns)
        data = {name: std[name] for name in STANDARD_COLUMNS}
        data.update({name: self.frame[name].to_numpy(dtype=float) for name in self.covariate_names})
        return pd.DataFrame(data)

    def check_against(self, model: Model) -> None:
        """Raise the first DatasetError met when simulating ``model`` on these records.

        Checks that dose records target a dose compartment of the model, that
        observation CMTs are states, that RATE = -1/-2 have a modelled rate or
        duration, and that the model's covariates are columns.
        """
        problems = _model_problems(_standard_arrays(self.frame, self.columns), self.columns,
                                   self.covariate_names, model)
        if problems:
            raise _sorted(problems, self.frame.columns)[0]


# ---------------------------------------------------------------------------- reading text
def _read_text(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return read_text(source, what="dataset", allow_empty=True)
    text = source.read()
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"the dataset is not UTF-8 text (byte 0x{text[exc.start]:02x} at offset "
                               f"{exc.start})") from None
    return text


def _split(line: str, comma: bool) -> list[str]:
    if comma:
        return [cell.strip() for cell in next(csv.reader([line]))]
    return [cell for cell in re.split(r"[\s,]+", line.strip()) if cell != ""]


def _is_comment(line: str, alphabetic: bool = False) -> bool:
    """NONMEM IGNORE=#, IGNORE=@ (``alphabetic``: any line starting with a letter) and IGNORE=C."""
    stripped = line.lstrip()
    first = stripped[:1]
    return first in ("@", "#") or (alphabetic and first.isalpha()) or re.match(r"^[Cc](\s|,|$)", stripped) is not None


def _table_from_text(text: str, columns: Sequence[str] | None):
    """Split text into a string DataFrame; returns (frame, errors, bad_rows, notes)."""
    lines = text.splitlines()
    numbered = [(k + 1, line) for k, line in enumerate(lines) if line.strip()]
    if columns is None:
        while numbered and numbered[0][1].lstrip().startswith("#"):
            numbered.pop(0)
        if not numbered:
            return pd.DataFrame(), [DatasetError("the dataset is empty (no header line)")], set(), []
        _, header_line = numbered.pop(0)
        header_line = header_line.lstrip().lstrip("@")
        comma = "," in header_line
        header = _split(header_line, comma)
    else:
        header = [str(c) for c in columns]
        comma = any("," in line for _, line in numbered[:5])
    errors, bad_rows, records, ignored = [], set(), [], []
    for line_no, line in numbered:
        if _is_comment(line, alphabetic=columns is not None):
            ignored.append(line_no)
            continue
        cells = _split(line, comma)
        row = len(records) + 1
        while len(cells) > len(header) and cells[-1] == "":
            cells.pop()
        if len(cells) != len(header):
            errors.append(DatasetError(
                f"record (file line {line_no}) has {len(cells)} cells but the header names {len(header)} columns",
                row=row))
            bad_rows.add(row)
            cells = (cells + [""] * len(header))[: len(header)]
        records.append(cells)
    notes = []
    if ignored:
        shown = ", ".join(str(n) for n in ignored[:10]) + (" ..." if len(ignored) > 10 else "")
        notes.append(f"ignored {len(ignored)} comment line(s) (IGNORE=@/#/C) at file line(s) {shown}")
    for k, name in enumerate(header):
        if not name:
            errors.append(DatasetError(f"header column {k + 1} has no name", column=f"#{k + 1}"))
    frame = pd.DataFrame(records, columns=pd.Index(header, dtype=object), dtype=object)
    return frame, errors, bad_rows, notes


# ---------------------------------------------------------------------------- parsing cells
def _parse_column(values: pd.Series, name: str) -> tuple[np.ndarray, list[DatasetError]]:
    """Numbers of one column (NaN for missing) and the errors of unparseable cells."""
    if values.dtype.kind in "iufb":
        out = values.to_numpy(dtype=float, na_value=np.nan)
        errors = [DatasetError(f"non-finite number {out[i]!r}", row=int(i) + 1, column=name)
                  for i in np.flatnonzero(np.isinf(out))]
        return out, errors
    out = np.full(len(values), np.nan)
    errors = []
    for i, cell in enumerate(values.to_numpy(dtype=object)):
        if cell is None or cell is pd.NA or (isinstance(cell, float) and np.isnan(cell)):
            continue
        text = str(cell).strip()  # str() of a float is its shortest round-trip repr
        if text in ("", "."):
            continue
        if _NON_FINITE.match(text):
            errors.append(DatasetError(f"non-finite number {text!r}", row=i + 1, column=name))
        elif not _NUMBER.match(text):
            errors.append(DatasetError(f"non-numeric cell {text!r}", row=i + 1, column=name))
        else:
            number = float(text.replace("d", "e").replace("D", "e"))
            if not np.isfinite(number):
                errors.append(DatasetError(f"non-finite number {text!r} (overflows float64)", row=i + 1, column=name))
            else:
                out[i] = number
    return out, errors


def _column_map(names: Iterable[str]) -> tuple[dict[str, str], list[DatasetError]]:
    mapping, errors, seen = {}, [], {}
    for name in names:
        key = str(name).upper()
        if key in seen:
            errors.append(DatasetError(f"duplicate column (also {seen[key]!r})", column=str(name)))
            continue
        seen[key] = str(name)
        if key in STANDARD_COLUMNS:
            mapping[key] = str(name)
    for required in ("ID", "TIME"):
        if required not in mapping:
            shown = ", ".join(repr(str(n)) for n in list(seen.values())[:12])
            errors.append(DatasetError(f"required column {required} is missing (the header names {shown or 'nothing'})",
                                       column=required))
    return mapping, errors


def _infer(num: pd.DataFrame, mapping: Mapping[str, str]) -> tuple[pd.DataFrame, dict, tuple]:
    """Append inferred EVID/MDV columns (NONMEM rules) when absent."""
    num = num.copy()
    mapping = dict(mapping)
    inferred = tuple(c for c in STANDARD_COLUMNS if c not in mapping)

    def col(name):
        return np.nan_to_num(num[mapping[name]].to_numpy(dtype=float)) if name in mapping else np.zeros(len(num))

    if "EVID" not in mapping:
        amt, rate, ss = col("AMT"), col("RATE"), col("SS")
        dose = (amt > 0) | ((ss > 0) & (rate > 0))
        if "MDV" in mapping:
            evid = np.where(dose, 1, np.where(col("MDV") == 0, 0, 2))
            evid = np.where((col("MDV") == 0) & (amt != 0), 0, evid)  # AMT on an observation: reported later
        else:
            evid = np.where(dose, 1, 0)
        num["EVID"], mapping["EVID"] = evid.astype(float), "EVID"  # absent: no column is named EVID in any case
    if "MDV" not in mapping:
        num["MDV"], mapping["MDV"] = np.where(num[mapping["EVID"]].fillna(0).to_numpy() == 0, 0.0, 1.0), "MDV"
    return num, mapping, inferred


def _standard_arrays(num: pd.DataFrame, mapping: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Standard columns as float arrays with NONMEM defaults (NaN kept for DV, CMT)."""
    out = {}
    for name in STANDARD_COLUMNS:
        if name in mapping:
            values = num[mapping[name]].to_numpy(dtype=float)
        else:
            values = np.full(len(num), np.nan)
        if name in _ZERO_DEFAULT:
            values = np.nan_to_num(values, nan=0.0)
        out[name] = values
    cmt = out["CMT"]
    out["CMT"] = np.where(cmt == 0, np.nan, cmt)
    return out


# ---------------------------------------------------------------------------- rules
def _record_problems(std: dict, mapping: Mapping[str, str], bad: Mapping[str, np.ndarray]) -> list[DatasetError]:
    """Row rules that need no model (NONMEM's data-item rules); rows whose cells a rule reads are
    unparseable (``bad`` per standard column) are skipped by that rule, having been reported already."""
    errors: list[DatasetError] = []
    name = {k: mapping.get(k, k) for k in STANDARD_COLUMNS}
    ids, time, evid, mdv = std["ID"], std["TIME"], std["EVID"], std["MDV"]
    n = len(ids)

    def skip(*columns):
        return np.logical_or.reduce([bad[c] for c in columns])

    def add(mask, column, message, needs=()):
        for i in np.flatnonzero(mask & ~skip(column, *needs)):
            errors.append(DatasetError(message(i), row=int(i) + 1, column=name[column]))

    add(np.isnan(ids), "ID", lambda i: "missing ID")
    add(np.isnan(time), "TIME", lambda i: "missing TIME")
    add(time < 0, "TIME", lambda i: f"negative time {time[i]:g} h")
    same = np.zeros(n, bool)
    same[1:] = ids[1:] == ids[:-1]
    back = np.zeros(n, bool)
    back[1:] = same[1:] & (time[1:] < time[:-1]) & (time[1:] >= 0)
    add(back, "TIME", lambda i: f"time goes backwards within ID {_id(ids[i])}: {time[i]:g} h after {time[i - 1]:g} h "
        "(time resets after EVID 3/4 are not supported; give the occasion its own times)", needs=("ID",))
    first_seen: dict[float, int] = {}
    for i in range(n):
        if np.isnan(ids[i]) or (i > 0 and same[i]):
            continue
        if ids[i] in first_seen and not bad["ID"][i]:
            errors.append(DatasetError(
                f"ID {_id(ids[i])} reappears after other IDs (its records start at row {first_seen[ids[i]] + 1}); "
                "a subject's records must be contiguous", row=i + 1, column=name["ID"]))
        first_seen.setdefault(ids[i], i)
    valid_evid = np.isin(evid, (0, 1, 2, 3, 4))
    add(~valid_evid, "EVID", lambda i: f"EVID must be 0, 1, 2, 3 or 4, got {evid[i]:g}")
    bad_rows = skip(*STANDARD_COLUMNS)
    add(~np.isin(mdv, (0, 1)), "MDV", lambda i: f"MDV must be 0 or 1, got {mdv[i]:g}")
    observation = np.isin(evid, (0, 2))
    for column in _DOSING:
        values = std[column]
        add(observation & (values != 0), column, lambda i, c=column, v=values: (
            f"{'an observation' if evid[i] == 0 else 'an EVID 2'} record carries {c}={v[i]:g}; "
            "dosing information belongs on a dose record (EVID 1/4)"), needs=("EVID",))
    add((evid == 0) & (mdv == 0) & np.isnan(std["DV"]), "DV",
        lambda i: "DV is missing on an observation record with MDV=0 (set MDV=1 or give DV)", needs=("EVID", "MDV"))
    add(np.isin(evid, (1, 4)) & (mdv == 0), "MDV", lambda i: "a dose record must have MDV=1", needs=("EVID",))
    cmt = std["CMT"]
    add(~np.isnan(cmt) & ((cmt < 0) | (cmt != np.round(cmt))), "CMT",
        lambda i: f"CMT must be a non-negative integer, got {cmt[i]:g} (turning compartments off is not supported)")
    for i in np.flatnonzero(np.isin(evid, (1, 3, 4)) & ~bad_rows):
        c = cmt[i]
        problems = validate_dose_fields(
            time=time[i], amount=std["AMT"][i], cmt=None if np.isnan(c) or c < 0 or c != round(c) else int(c),
            rate=std["RATE"][i], ii=std["II"][i], addl=std["ADDL"][i], ss=std["SS"][i], evid=int(evid[i]),
        )
        for field_name, reason in problems:
            if field_name == "TIME" and time[i] < 0:
                continue  # already reported above
            errors.append(DatasetError(reason, row=int(i) + 1, column=name.get(field_name, field_name)))
    return errors


def _magnitude_problems(num, std: dict, mapping: Mapping[str, str], covariates, bad) -> list[DatasetError]:
    """Values beyond :data:`MAX_TIME_H`, :data:`MAX_AMOUNT` and :data:`MAX_VALUE` (each names row and column)."""
    errors: list[DatasetError] = []
    limits = {"TIME": (MAX_TIME_H, " h"), "II": (MAX_TIME_H, " h"), "AMT": (MAX_AMOUNT, " mg"),
              "RATE": (MAX_AMOUNT, " mg/h"), "DV": (MAX_VALUE, "")}
    for column, (limit, unit) in limits.items():
        values = std[column]
        for i in np.flatnonzero((np.abs(values) > limit) & ~bad[column]):
            errors.append(DatasetError(f"{values[i]:g}{unit} is beyond the largest accepted magnitude {limit:g}{unit}",
                                       row=int(i) + 1, column=mapping.get(column, column)))
    time, ii, addl = std["TIME"], std["II"], std["ADDL"]
    with np.errstate(invalid="ignore", over="ignore"):
        last = time + addl * ii
    ok = (time <= MAX_TIME_H) & (ii <= MAX_TIME_H) & ~(bad["TIME"] | bad["II"] | bad["ADDL"])
    for i in np.flatnonzero(ok & (last > MAX_TIME_H)):
        errors.append(DatasetError(f"the last of {addl[i]:g} additional doses every {ii[i]:g} h would be at "
                                   f"{last[i]:g} h, beyond the largest accepted time {MAX_TIME_H:g} h",
                                   row=int(i) + 1, column=mapping.get("ADDL", "ADDL")))
    for cov in covariates:
        values = num[cov].to_numpy(dtype=float)
        for i in np.flatnonzero(np.abs(values) > MAX_VALUE):
            errors.append(DatasetError(f"{values[i]:g} is beyond the largest accepted magnitude {MAX_VALUE:g}",
                                       row=int(i) + 1, column=cov))
    return errors


def _model_problems(std: dict, mapping: Mapping[str, str], covariates: Sequence[str], model: Model):
    """Rules that depend on the model: dose targets, states, modelled rates, covariates."""
    errors: list[DatasetError] = []
    name = {k: mapping.get(k, k) for k in STANDARD_COLUMNS}
    targets = {t.cmt: t for t in model.dose_targets}
    upper = {c.upper(): c for c in covariates}
    for cov in model.covariates:
        if cov not in covariates and cov.upper() not in upper:
            errors.append(DatasetError(f"model {model.name} needs covariate {cov!r}, which is not a column",
                                       column=cov))
    evid, cmt, rate = std["EVID"], std["CMT"], std["RATE"]
    for i in range(len(evid)):
        c = None if np.isnan(cmt[i]) else int(cmt[i])
        if evid[i] in (1, 4):
            c_eff = model.default_cmt if c is None else c
            if c_eff not in targets:
                errors.append(DatasetError(
                    f"CMT {c_eff} is not a dose compartment of model {model.name} "
                    f"(dose compartments: {sorted(targets)}; states: {list(model.state_names)})",
                    row=i + 1, column=name["CMT"]))
            elif rate[i] in (-1, -2) and getattr(targets[c_eff], "rate" if rate[i] == -1 else "duration") is None:
                what = "rate (R)" if rate[i] == -1 else "duration (D)"
                errors.append(DatasetError(f"RATE={rate[i]:g} needs a modelled {what} for CMT {c_eff}; model "
                                           f"{model.name} has none", row=i + 1, column=name["RATE"]))
        elif evid[i] in (0, 2) and c is not None and not 1 <= c <= model.n_states:
            errors.append(DatasetError(
                f"CMT {c} is not a state of model {model.name} (states 1..{model.n_states}: "
                f"{list(model.state_names)})", row=i + 1, column=name["CMT"]))
    return errors


def _covariate_problems(num, std, covariates, strict: bool):
    """Per-subject constancy of covariates: errors when strict, else notes."""
    errors, notes = [], []
    ids = std["ID"]
    if len(ids) == 0:
        return errors, notes
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    group = np.cumsum(np.r_[True, ids[1:] != ids[:-1]]) - 1
    for cov in covariates:
        values = num[cov].to_numpy(dtype=float)
        first = values[starts][group]
        differs = ~((values == first) | (np.isnan(values) & np.isnan(first)))
        if not differs.any():
            continue
        rows = np.flatnonzero(differs)
        changed_ids = sorted({_id(v) for v in ids[rows]}, key=float)
        if strict:
            i = int(rows[0])
            errors.append(DatasetError(
                f"covariate {cov} changes within ID {_id(ids[i])} ({values[i]:g} after {first[i]:g}); "
                "time-varying covariates are not supported", row=i + 1, column=cov))
        else:
            notes.append(
                f"covariate {cov} varies within {len(changed_ids)} subject(s) (first change at row {rows[0] + 1}, "
                f"ID {changed_ids[0]}); each subject keeps its first record's value (time-varying covariates are "
                "not supported yet)")
    return errors, notes


def _sorted(errors: list[DatasetError], columns) -> list[DatasetError]:
    order = {str(c): k for k, c in enumerate(columns)}
    unique, seen = [], set()
    for e in errors:
        key = (e.row, e.column, e.reason)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return sorted(unique, key=lambda e: (-1 if e.row is None else e.row, order.get(e.column, len(order))))


def _id(value):
    value = float(value)
    return int(value) if value.is_integer() else value


# ---------------------------------------------------------------------------- analysis
def _as_string_frame(source, columns):
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame, [], set(), []
    return _table_from_text(_read_text(source), columns)


def _analyse(source, *, model=None, strict_covariates=False, columns=None, drop=()):
    """Parse and check every rule; returns (errors, parts needed to build a Dataset)."""
    raw, errors, bad_rows, notes = _as_string_frame(source, columns)
    drop_upper = {str(d).upper() for d in drop}
    kept = [c for c in raw.columns if str(c).upper() not in drop_upper]
    if len(kept) != len(raw.columns):
        notes.append(f"dropped column(s) {[c for c in raw.columns if c not in kept]} on request")
    raw = raw[kept]
    mapping, column_errors = _column_map(raw.columns)
    errors += column_errors
    if len(raw) == 0 and not errors:
        errors.append(DatasetError("the dataset has no data records"))
    if any(e.row is None for e in column_errors):
        return _sorted(errors, raw.columns), None
    bad = {c: np.zeros(len(raw), bool) for c in STANDARD_COLUMNS}
    parsed = {}
    for c in raw.columns:
        parsed[c], cell_errors = _parse_column(raw[c], c)
        errors += cell_errors
        if str(c).upper() in bad:
            bad[str(c).upper()][[e.row - 1 for e in cell_errors]] = True
    for c in bad:
        bad[c][[r - 1 for r in bad_rows]] = True
    num = pd.DataFrame(parsed, index=pd.RangeIndex(len(raw)))
    num, mapping, inferred = _infer(num, mapping)
    if "EVID" in inferred:
        bad["EVID"] |= bad["AMT"] | bad["RATE"] | bad["SS"] | bad["MDV"]
    if "MDV" in inferred:
        bad["MDV"] |= bad["EVID"]
    std = _standard_arrays(num, mapping)
    covariates = tuple(c for c in raw.columns if str(c).upper() not in STANDARD_COLUMNS)
    errors += _record_problems(std, mapping, bad)
    errors += _magnitude_problems(num, std, mapping, covariates, bad)
    cov_errors, cov_notes = _covariate_problems(num, std, covariates, strict_covariates)
    errors += cov_errors
    notes += cov_notes
    if model is not None:
        errors += _model_problems(std, mapping, covariates, model)
    return _sorted(errors, num.columns), (num, mapping, inferred, covariates, std, notes)


def _build_subject(std, rows: np.ndarray, num, covariates, notes: list) -> Subject:
    evid = std["EVID"][rows]
    time = std["TIME"][rows]
    events, dose_row = [], []
    for i in rows[np.isin(evid, (1, 3, 4))]:
        e = int(std["EVID"][i])
        cmt = std["CMT"][i]
        events.append(DoseEvent(
            time=float(std["TIME"][i]), amount=float(std["AMT"][i]),
            cmt=None if e == 3 or np.isnan(cmt) else int(cmt), rate=float(std["RATE"][i]),
            ii=float(std["II"][i]), addl=int(std["ADDL"][i]), ss=int(std["SS"][i]), evid=e,
        ))
        dose_row.append(i + 1)
    obs = np.isin(evid, (0, 2))
    pre = _pre_dose_flags(time, evid, rows, std["ID"][rows[0]], notes)
    return Subject(
        id=_id(std["ID"][rows[0]]),
        regimen=Regimen(tuple(events)),
        obs_times=time[obs].astype(float),
        obs_dv=std["DV"][rows][obs],
        obs_evid=evid[obs].astype(int),
        obs_mdv=std["MDV"][rows][obs].astype(int),
        obs_row=rows[obs] + 1,
        pre_dose=pre[obs],
        covariates={c: float(num[c].iat[rows[0]]) for c in covariates},
        dose_row=np.array(dose_row, dtype=int),
        rows=rows + 1,
    )


def _pre_dose_flags(time, evid, rows, subject_id, notes: list) -> np.ndarray:
    """Per record: True when a dose record with the same TIME follows it in file order.

    Same-time orders the simulator cannot represent (it applies resets first,
    then doses; an output sees the state before all or after all doses at its
    time) are recorded in ``notes``.
    """
    pre = np.zeros(len(time), bool)
    for t in np.unique(time[np.r_[False, time[1:] == time[:-1]] | np.r_[time[:-1] == time[1:], False]]):
        group = np.flatnonzero(time == t)
        kinds = evid[group]
        for k, i in enumerate(group):
            later, earlier = kinds[k + 1:], kinds[:k]
            where = f"row {rows[i] + 1} (ID {_id(subject_id)}), t={t:g} h:"
            if kinds[k] in (0, 2):
                pre[i] = bool(np.isin(later, (1, 4)).any())
                if pre[i] and np.isin(earlier, (1, 4)).any():
                    notes.append(f"{where} a record between dose records is simulated before all of them")
                if np.isin(later, (3, 4)).any():
                    notes.append(f"{where} a record before a reset is simulated after the reset")
            elif kinds[k] in (1, 4) and np.isin(later, 3).any():
                notes.append(f"{where} a dose before a reset is simulated after the reset")
    return pre


# ---------------------------------------------------------------------------- public API
def validate_nonmem(source, *, access, model: Model | None = None, strict_covariates: bool = False,
                    columns: Sequence[str] | None = None, drop: Sequence[str] = ()) -> list[DatasetError]:
    """Every problem of a NONMEM-style dataset, in file order (empty when valid).

    Parameters
    ----------
    source : path, text/binary buffer, pandas.DataFrame or Dataset
        The dataset; see :func:`read_nonmem`.
    access : DataAccess
        As for :func:`read_nonmem` (problems quote cell values).
    model : Model, optional
        Also check CMT, RATE = -1/-2 and covariates against this model.
    strict_covariates, columns, drop
        As for :func:`read_nonmem`.

    Returns
    -------
    list of DatasetError
        Each names the 1-based data row (``row``) and the column (``column``).

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> synthetic = OpenData("synthetic records")
    >>> [str(e) for e in validate_nonmem(io.StringIO("ID,TIME,AMT\\n1,-1,10\\n1,2,x\\n"), access=synthetic)]
    ['row 1, column TIME: negative time -1 h', "row 2, column AMT: non-numeric cell 'x'"]
    """
    if isinstance(source, Dataset):
        source = source.frame
    errors, parts = _analyse(source, model=model, strict_covariates=strict_covariates, columns=columns, drop=drop)
    _authorize_parts(access, parts, "read")
    return errors


def data_classes(columns: Iterable[str]) -> tuple[str, ...]:
    """Consent data classes a table with these columns holds (see :mod:`medtwin.io.access`).

    DV or TIME -> ``observations``; AMT or RATE -> ``medications``; any
    non-standard column (a covariate) -> ``demographics``.

    Examples
    --------
    >>> data_classes(["ID", "TIME", "AMT", "DV", "WGT"])
    ('observations', 'medications', 'demographics')
    """
    names = {str(c).upper() for c in columns}
    classes = [cls for cls, keys in (("observations", {"DV", "TIME"}), ("medications", {"AMT", "RATE"}))
               if names & keys]
    if names - set(STANDARD_COLUMNS):
        classes.append("demographics")
    return tuple(classes)


def _authorize_parts(access, parts, operation: str) -> None:
    """Ask *access* about every subject of an analysed table (no subjects when its ID column is unusable)."""
    if parts is None:
        authorize(access, [], (), operation)
        return
    num, mapping, _, covariates, std, _ = parts
    ids = std["ID"][np.isfinite(std["ID"])]
    authorize(access, np.unique(ids), data_classes([*mapping, *covariates]), operation)


def dataset_data_classes(dataset: Dataset) -> tuple[str, ...]:
    """The consent data classes of a dataset (:func:`data_classes` of its columns)."""
    return data_classes([*dataset.columns, *dataset.covariate_names])


def read_nonmem(source, *, access, model: Model | None = None, strict_covariates: bool = False,
                columns: Sequence[str] | None = None, drop: Sequence[str] = ()) -> Dataset:
    """Read and validate a NONMEM-style dataset.

    Parameters
    ----------
    source : path, text/binary buffer or pandas.DataFrame
        A comma-separated file with a header, or a whitespace-separated NONMEM
        file (header line first, e.g. ``ID TIME AMT WGT APGR DV``).  Lines
        starting with ``#`` or ``@``, or whose first cell is ``C``, are comment
        records (NONMEM IGNORE=#/@/C) and are listed in :attr:`Dataset.notes`.
        A DataFrame is taken as the records themselves (row k is data row k+1).
    access : DataAccess
        Required: a :class:`~medtwin.governance.consent_store.ConsentGate`
        (the subjects' consents are checked for every data class in the file
        before anything is returned) or :class:`~medtwin.io.access.OpenData`
        for data that are not identifiable (see :mod:`medtwin.io.access`).
    model : Model, optional
        Also check the records against this model (:meth:`Dataset.check_against`).
    strict_covariates : bool
        Raise when a covariate changes within a subject; otherwise each subject
        keeps its first record's value and a note names the covariate
        (time-varying covariates are not supported yet).
    columns : sequence of str, optional
        Column names for a file without a header (NONMEM ``$INPUT``); a header
        line, if present, is then ignored as a comment.
    drop : sequence of str
        Columns to ignore (NONMEM ``=DROP``); noted in :attr:`Dataset.notes`.

    Returns
    -------
    Dataset

    Raises
    ------
    ConsentError
        *access* denies any subject (checked before any problem is reported).
    DatasetError
        The first problem in file order (``row`` 1-based, ``column`` named).

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> synthetic = OpenData("synthetic records")
    >>> ds = read_nonmem(io.StringIO("ID TIME AMT DV\\n1 0 25 0\\n1 2 0 17.3\\n"), access=synthetic)
    >>> ds.inferred, ds.frame["EVID"].tolist()
    (('MDV', 'EVID', 'CMT', 'RATE', 'II', 'ADDL', 'SS'), [1.0, 0.0])
    """
    errors, parts = _analyse(source, model=model, strict_covariates=strict_covariates, columns=columns, drop=drop)
    _authorize_parts(access, parts, "read")
    if errors:
        raise errors[0]
    num, mapping, inferred, covariates, std, notes = parts
    ids = std["ID"]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    bounds = np.r_[starts, len(ids)]
    subjects = tuple(_build_subject(std, np.arange(bounds[k], bounds[k + 1]), num, covariates, notes)
                     for k in range(len(starts)))
    for note in notes:
        if "is simulated" in note:
            warnings.warn(f"NONMEM record order not representable: {note}", stacklevel=2)
    return Dataset(frame=num, subjects=subjects, covariate_names=covariates, columns=mapping,
                   inferred=inferred, notes=tuple(notes))


# ---------------------------------------------------------------------------- writing
def _integral_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose values are all integers become nullable ints (written without '.0')."""
    out = frame.copy()
    for c in out.columns:
        values = out[c].to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        if finite.size and np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
            out[c] = pd.Series(values, index=out.index).astype("Int64")
    return out


def write_nonmem(dataset_or_frame, path, *, access) -> None:
    """Write a standard NONMEM CSV that :func:`read_nonmem` reads back equal.

    Columns: ID, TIME, AMT, DV, MDV, EVID, CMT, RATE, II, ADDL, SS, then the
    covariates; missing values are written as ``.``.

    Parameters
    ----------
    dataset_or_frame : Dataset or pandas.DataFrame
        A frame is validated with :func:`read_nonmem` first.
    path : path or text buffer
        Destination.
    access : DataAccess
        Asked for a ``write`` of every subject's data classes before anything is written.

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> synthetic = OpenData("synthetic records")
    >>> ds = read_nonmem(io.StringIO("ID TIME AMT DV\\n1 0 25 0\\n1 2 0 17.3\\n"), access=synthetic)
    >>> out = io.StringIO(); write_nonmem(ds, out, access=synthetic)
    >>> out.getvalue().splitlines()[:2]
    ['ID,TIME,AMT,DV,MDV,EVID,CMT,RATE,II,ADDL,SS', '1,0,25,0.0,1,1,.,0,0,0,0']
    >>> read_nonmem(io.StringIO(out.getvalue()), access=synthetic) == ds
    True
    """
    dataset = (dataset_or_frame if isinstance(dataset_or_frame, Dataset)
               else read_nonmem(dataset_or_frame, access=access))
    authorize(access, dataset.ids, dataset_data_classes(dataset), "write")
    _integral_columns(dataset.to_frame()).to_csv(path, index=False, na_rep=".", lineterminator="\n")
