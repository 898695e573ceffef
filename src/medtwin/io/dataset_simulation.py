"""Simulating a NONMEM-style dataset and writing the result.

:func:`simulate_dataset` runs a model on every subject of a
:class:`~medtwin.io.nonmem.Dataset` (its doses, record times and order);
:func:`write_simulation` writes one CSV row per output record, after the
patients' consent allows it (see :mod:`medtwin.io.access`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping

import numpy as np
import pandas as pd

from medtwin.core.model import Model
from medtwin.core.simulate import Trajectory, simulate
from medtwin.errors import DatasetError, ParameterError, SimulationError
from medtwin.io.access import authorize
from medtwin.io.nonmem import Dataset, _id, _standard_arrays, read_nonmem  # noqa: F401  (read_nonmem: doctests)

__all__ = ["read_parameter_table", "simulate_dataset", "write_simulation"]


def read_parameter_table(source) -> pd.DataFrame:
    """A parameter table (CSV, or whitespace-separated): an ``ID`` column and one column per parameter.

    Cells are read as strictly as a dataset's (:mod:`medtwin.io.nonmem`):
    ASCII numbers (``.`` or empty for missing), finite, ``|value|`` at most
    :data:`~medtwin.io.nonmem.MAX_VALUE`.  Raises DatasetError naming the row
    and column of the first bad cell, or DataError for an unreadable file.

    Examples
    --------
    >>> import io
    >>> read_parameter_table(io.StringIO("ID,CL,V\\n1,2,20\\n")).to_dict("list")
    {'ID': [1.0], 'CL': [2.0], 'V': [20.0]}
    """
    from medtwin.io.nonmem import MAX_VALUE, _parse_column, _read_text, _table_from_text

    raw, errors, _, _ = _table_from_text(_read_text(source), None)
    if not errors and len(raw) == 0:
        errors.append(DatasetError("the parameter table has no rows"))
    if not any(str(c).upper() == "ID" for c in raw.columns):
        shown = ", ".join(repr(str(c)) for c in list(raw.columns)[:12])
        errors.insert(0, DatasetError(f"no ID column to match the subjects (the header names {shown or 'nothing'})"))
    if errors:
        raise DatasetError(f"parameter table: {errors[0]}")
    columns = {}
    for name in raw.columns:
        values, cell_errors = _parse_column(raw[name], str(name))
        big = np.flatnonzero(np.abs(values) > MAX_VALUE) if str(name).upper() != "ID" else []
        if cell_errors:
            raise DatasetError(f"parameter table: {cell_errors[0]}")
        if len(big):
            raise DatasetError(f"parameter table: row {int(big[0]) + 1}, column {name}: {values[big[0]]:g} is beyond "
                               f"the largest accepted magnitude {MAX_VALUE:g}")
        columns[str(name)] = values
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------- simulation
def _subject_parameters(model: Model, dataset: Dataset, params) -> np.ndarray:
    """Parameter table (n_subjects, n_parameters), one row per subject in dataset order."""
    n = len(dataset.subjects)
    ids = dataset.ids
    if params is None:
        if model.covariate_model is not None and model.covariates:
            cov = {c: np.array([s.covariates[c] for s in dataset.subjects]) for c in model.covariates}
            return _table(model, model.typical_parameters(cov), n, ids)
        return _table(model, {}, n, ids)
    if callable(params) and not isinstance(params, Mapping):
        rows = []
        for s in dataset.subjects:
            try:
                rows.append(model.parameter_table(params(s), n=1)[0])
            except ParameterError as exc:
                raise ParameterError(f"subject ID {s.id}: {exc}") from exc
        return np.array(rows).reshape(n, len(model.parameters))
    if isinstance(params, pd.DataFrame):
        id_cols = [c for c in params.columns if str(c).upper() == "ID"]
        if not id_cols:
            raise DatasetError("the parameter table needs an ID column to match subjects", column="ID")
        params = {("ID" if c == id_cols[0] else c): params[c].to_numpy() for c in params.columns}
    if isinstance(params, Mapping):
        if "ID" not in params:
            return _table(model, params, n, ids)
        return _table(model, _match_ids(params, ids), n, ids)
    table = np.asarray(params, dtype=float)
    return _table(model, {name: table[..., j] for j, name in enumerate(model.parameter_names)}, n, ids)


def _match_ids(params: Mapping, ids: np.ndarray) -> dict:
    """Reorder the per-ID columns of ``params`` to the dataset's subject order."""
    given = pd.Index(np.asarray(params["ID"], dtype=float))
    if given.has_duplicates:
        raise DatasetError(f"the parameter table has ID {_id(given[given.duplicated()][0])} twice", column="ID")
    order = given.get_indexer(ids.astype(float))
    if (order < 0).any():
        raise DatasetError(f"the parameter table has no row for subject ID {ids[order < 0][0]}", column="ID")
    return {k: np.asarray(v, dtype=float)[order] for k, v in params.items() if k != "ID"}


def _table(model: Model, values: Mapping, n: int, ids: np.ndarray) -> np.ndarray:
    try:
        return model.parameter_table(values, n=n)
    except ParameterError as exc:
        message = re.sub(r"patient (\d+)", lambda m: f"subject ID {ids[int(m.group(1))]}", str(exc))
        raise ParameterError(message) from exc


def simulate_dataset(model: Model, dataset: Dataset, params=None, *, records: str = "observations",
                     **simulate_kwargs) -> Trajectory:
    """Simulate ``model`` on every subject of ``dataset`` (its doses, times and record order).

    Parameters
    ----------
    model : Model
        The model; the dataset is checked against it first.
    dataset : Dataset
        From :func:`read_nonmem`.
    params : optional
        ``None`` (typical values, covariate-adjusted when the model has a
        covariate model); a mapping or DataFrame with an ``ID`` column (one row
        per subject, matched by ID; a missing ID raises DatasetError naming it);
        a mapping without ``ID`` (scalars or arrays in subject order); an array
        (n_subjects, n_parameters); or a callable ``f(subject) -> mapping`` of
        the subject's covariates (and ID), e.g. for phenobarbital
        ``lambda s: {"CL": th1 * s.covariates["WGT"], "V": th2 * s.covariates["WGT"]}``.
        Missing parameter names take the model's typical values.
    records : {"observations", "all"}
        ``"observations"``: output at the EVID 0 and 2 records.  ``"all"``: at
        every record, as NONMEM's PRED/IPRED tables do; at a dose or reset
        record the output is taken after the doses (and resets) at that time.
    **simulate_kwargs
        Passed to :func:`medtwin.core.simulate.simulate` (``method``, ``rtol`` ...).

    Returns
    -------
    Trajectory
        Rows per subject in file order; ``extra`` holds ``row`` (1-based data
        rows), ``evid`` and ``dv`` of each output row.

    Examples
    --------
    >>> import io
    >>> from medtwin.models import get_model
    >>> from medtwin.io.access import OpenData
    >>> ds = read_nonmem(io.StringIO("ID TIME AMT DV\\n1 0 100 0\\n1 10 0 2\\n2 0 50 0\\n2 10 0 1\\n"),
    ...                  access=OpenData("synthetic records"))
    >>> tr = simulate_dataset(get_model("pk1_iv"), ds, {"ID": [2, 1], "CL": [2.0, 2.0], "V": [20.0, 20.0]},
    ...                       records="all")
    >>> tr.outputs["C"].round(3).tolist()
    [5.0, 1.839, 2.5, 0.92]
    """
    for forbidden in ("regimen", "times", "pre_dose", "ids"):
        if forbidden in simulate_kwargs:
            raise SimulationError(f"simulate_dataset takes {forbidden!r} from the dataset; do not pass it")
    if records not in ("observations", "all"):
        raise SimulationError(f"records must be 'observations' or 'all', got {records!r}")
    dataset.check_against(model)
    table = _subject_parameters(model, dataset, params)
    std = _standard_arrays(dataset.frame, dataset.columns)
    times, pre, rows = [], [], []
    for s in dataset.subjects:
        if records == "observations":
            times.append(s.obs_times)
            pre.append(s.pre_dose)
            rows.append(s.obs_row)
        else:
            index = s.rows - 1
            flags = np.zeros(len(index), bool)
            observed = np.isin(s.rows, s.obs_row)
            flags[observed] = s.pre_dose
            times.append(std["TIME"][index])
            pre.append(flags)
            rows.append(s.rows)
    trajectory = simulate(model, table, [s.regimen for s in dataset.subjects], times, pre_dose=pre,
                          ids=dataset.ids, **simulate_kwargs)
    row = np.concatenate(rows).astype(int) if rows else np.zeros(0, int)
    extra = {**trajectory.extra, "row": row, "evid": std["EVID"][row - 1].astype(int), "dv": std["DV"][row - 1]}
    return replace(trajectory, extra=extra)



def write_simulation(trajectory: Trajectory, path, *, access, observations_only: bool = False) -> None:
    """Write one row per output record: ID, TIME, (EVID, ROW when known), then every model output.

    Parameters
    ----------
    trajectory : Trajectory
        From :func:`simulate_dataset` (or :func:`~medtwin.core.simulate.simulate`).
    path : path or text buffer
        Destination CSV; failed patients' NaN outputs are written as ``.``.
    access : DataAccess
        Asked for a ``write`` of the patients' ``observations`` (simulated
        outputs are derived from their data) before anything is written.
    observations_only : bool
        Keep only the observation records (EVID 0) of a :func:`simulate_dataset` result.

    Examples
    --------
    >>> import io
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.models import get_model
    >>> synthetic = OpenData("synthetic records")
    >>> ds = read_nonmem(io.StringIO("ID TIME AMT DV\\n1 0 100 0\\n1 10 0 2\\n"), access=synthetic)
    >>> out = io.StringIO()
    >>> write_simulation(simulate_dataset(get_model("pk1_iv"), ds, {"CL": 2.0, "V": 20.0}), out, access=synthetic)
    >>> out.getvalue().splitlines()[0]
    'ID,TIME,EVID,ROW,C'
    """
    patients = trajectory.ids if trajectory.ids is not None else np.arange(1, trajectory.n_patients + 1)
    authorize(access, patients, ("observations",), "write")
    frame = trajectory.to_frame()
    position = 2
    for key, column in (("evid", "EVID"), ("row", "ROW")):
        if key in trajectory.extra and len(trajectory.extra[key]) == len(frame):
            frame.insert(position, column, np.asarray(trajectory.extra[key]))
            position += 1
    if observations_only:
        if "EVID" not in frame.columns:
            raise SimulationError("observations_only needs a simulate_dataset result (it knows each record's EVID)")
        frame = frame[frame["EVID"].to_numpy() == 0]
    frame.to_csv(path, index=False, na_rep=".", lineterminator="\n")
