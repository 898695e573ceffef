"""Plain data values of the data flow: one patient's data in, a predictive band out.

:class:`PatientData` is what a patient record gives personalization (doses,
observations, covariates); :class:`PredictiveBand` is what a forecast gives
back (posterior-predictive draws of every output).  Both are immutable values
with validation at construction; neither reads a file, the clock or a global.
Measurements from a live stream are in :mod:`medtwin.core.stream`.

Examples
--------
>>> from medtwin.core.events import Regimen
>>> data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0),
...                    times=[11.5, 35.5], values=[9.0, 12.5], covariates={"CRCL": 60.0, "WT": 75.0})
>>> data.n_observations, data.first(1).times.tolist()
(2, [11.5])
>>> band = PredictiveBand(np.array([0.0, 1.0, 2.0]), {"C": np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])}, {},
...                       {"C": "mg/L"})
>>> band.median("C").tolist(), band.auc("C", 0.0, 2.0).tolist()
([2.0, 3.0, 4.0], [4.0, 8.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from medtwin.core.events import Regimen
from medtwin.errors import DataError

__all__ = ["PatientData", "PredictiveBand", "QUANTILES"]

#: Quantiles reported by a band: median, 50 % and 90 % central intervals.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

@dataclass(frozen=True)
class PatientData:
    """One patient's doses, observations and covariates.

    Parameters
    ----------
    regimen : Regimen
        Every dose given up to (and possibly beyond) the last observation.
    times : array_like
        Observation times (h), shape (J,).
    values : array_like
        Observed values of ``output`` (its unit, e.g. mg/L), shape (J,); ignored where ``blq``.
    covariates : mapping
        Covariate name -> value (units of the population file).
    output : str, optional
        Observed model output (default: the population's residual-error output).
    blq : array_like of bool, optional
        True where the observation is below the limit of quantification (M3 likelihood).
    lloq : float or array_like, optional
        Lower limit of quantification (output unit); needed when any ``blq``.
    pre_dose : array_like of bool, optional
        Observations recorded before a dose at the same time (NONMEM record order).
    patient : str, optional
        Identifier, for reports.
    rows : array_like of int, optional
        Data-file row of every observation (1-based), named in error messages.
    """

    regimen: Regimen
    times: Any
    values: Any
    covariates: Mapping[str, float] = field(default_factory=dict)
    output: str | None = None
    blq: Any = None
    lloq: Any = None
    pre_dose: Any = None
    patient: str | None = None
    rows: Any = field(default=None, compare=False)

    def __post_init__(self):
        times = np.asarray(self.times, dtype=float).reshape(-1)
        values = np.asarray(self.values, dtype=float).reshape(-1)
        if times.shape != values.shape:
            raise DataError(f"patient data: times {times.shape} and values {values.shape} differ in length")
        blq = np.zeros(len(times), bool) if self.blq is None else np.asarray(self.blq, bool).reshape(-1)
        pre = np.zeros(len(times), bool) if self.pre_dose is None else np.asarray(self.pre_dose, bool).reshape(-1)
        for name, arr in (("blq", blq), ("pre_dose", pre)):
            if arr.shape != times.shape:
                raise DataError(f"patient data: {name} has {arr.size} entries for {times.size} observations")
        bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
        if bad.size:
            raise DataError(f"patient data: observation {bad[0] + 1}: time {times[bad[0]]} h is not a finite "
                            "non-negative number")
        bad = np.flatnonzero(~np.isfinite(values) & ~blq)
        if bad.size:
            raise DataError(f"patient data: observation {bad[0] + 1} (t = {times[bad[0]]} h): value "
                            f"{values[bad[0]]} is not finite (flag it blq=True if below the LLOQ)")
        lloq = None
        if blq.any():
            if self.lloq is None:
                raise DataError("patient data: observations flagged blq need an lloq")
            lloq = np.broadcast_to(np.asarray(self.lloq, dtype=float), times.shape).copy()
        if not isinstance(self.regimen, Regimen):
            raise DataError(f"patient data: regimen must be a Regimen, not {type(self.regimen).__name__}")
        rows = None if self.rows is None else np.asarray(self.rows, dtype=np.int64).reshape(-1)
        if rows is not None and rows.shape != times.shape:
            raise DataError(f"patient data: rows has {rows.size} entries for {times.size} observations")
        for name, value in (("times", times), ("values", values), ("blq", blq), ("pre_dose", pre), ("lloq", lloq),
                            ("rows", rows)):
            if value is not None:
                value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "covariates", {k: float(v) for k, v in dict(self.covariates).items()})

    @property
    def n_observations(self) -> int:
        return int(self.times.size)

    @classmethod
    def from_subject(cls, subject, output: str | None = None) -> "PatientData":
        """A NONMEM :class:`~medtwin.io.nonmem.Subject`: its regimen, covariates and observed records.

        Observation records are EVID 0 with MDV 0 and a DV; other output records are dropped.
        """
        keep = (np.asarray(subject.obs_evid) == 0) & (np.asarray(subject.obs_mdv) == 0) & \
            np.isfinite(np.asarray(subject.obs_dv, dtype=float))
        return cls(subject.regimen, np.asarray(subject.obs_times)[keep], np.asarray(subject.obs_dv)[keep],
                   dict(subject.covariates), output, pre_dose=np.asarray(subject.pre_dose)[keep],
                   patient=str(subject.id), rows=np.asarray(subject.obs_row)[keep])

    def where(self, k: int) -> str:
        """Observation ``k`` (0-based) in the user's words: its data row when known, and its time."""
        which = f"data row {self.rows[k]}" if self.rows is not None else f"observation {k + 1}"
        who = f"patient {self.patient}, " if self.patient is not None else ""
        return f"{who}{which} (t = {self.times[k]:g} h)"

    def first(self, k: int) -> "PatientData":
        """The first ``k`` observations (same regimen and covariates)."""
        sl = slice(0, int(k))
        return PatientData(self.regimen, self.times[sl], self.values[sl], self.covariates, self.output,
                           self.blq[sl], None if self.lloq is None else self.lloq[sl], self.pre_dose[sl],
                           self.patient, None if self.rows is None else self.rows[sl])

    def rest(self, k: int) -> "PatientData":
        """The observations after the first ``k``."""
        sl = slice(int(k), None)
        return PatientData(self.regimen, self.times[sl], self.values[sl], self.covariates, self.output,
                           self.blq[sl], None if self.lloq is None else self.lloq[sl], self.pre_dose[sl],
                           self.patient, None if self.rows is None else self.rows[sl])


@dataclass(frozen=True, eq=False)
class PredictiveBand:
    """Posterior predictive draws of a regimen's outputs at ``times`` (h).

    Attributes
    ----------
    times : ndarray, shape (T,)
    draws : dict name -> ndarray (n_draws, T)
        Model outputs under parameter uncertainty (output units).
    observed : dict name -> ndarray (n_draws, T)
        The observed output with residual error added.
    units : dict name -> str
    """

    times: np.ndarray
    draws: Mapping[str, np.ndarray]
    observed: Mapping[str, np.ndarray]
    units: Mapping[str, str]
    failed: int = 0

    def quantiles(self, output: str, residual: bool = False, q=QUANTILES) -> np.ndarray:
        """Quantiles (len(q), T) of an output; ``residual`` adds the residual error."""
        source = self.observed if residual else self.draws
        if output not in source:
            raise DataError(f"band: no {'observed ' if residual else ''}output {output!r}; have {sorted(source)}")
        values = source[output]
        if not np.isnan(values).any():  # the same numbers, without nanquantile's column-by-column loop
            return np.quantile(values, q, axis=0)
        return np.nanquantile(values, q, axis=0)

    def median(self, output: str) -> np.ndarray:
        return self.quantiles(output, q=(0.5,))[0]

    def interval(self, output: str, level: float = 0.9, residual: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` band (lo, hi), each (T,)."""
        lo, hi = self.quantiles(output, residual, q=((1 - level) / 2, (1 + level) / 2))
        return lo, hi

    def _window(self, start: float, end: float) -> np.ndarray:
        mask = (self.times >= start - 1e-9) & (self.times <= end + 1e-9)
        if mask.sum() < 2:
            raise DataError(f"band: fewer than two times in [{start}, {end}] h")
        return mask

    def auc(self, output: str, start: float, end: float) -> np.ndarray:
        """AUC over [start, end] h per draw, trapezoid rule on the band's grid (unit·h), shape (n_draws,)."""
        mask = self._window(start, end)
        return np.trapezoid(self.draws[output][:, mask], self.times[mask], axis=1)

    def cmax(self, output: str, start: float, end: float) -> np.ndarray:
        """Maximum over [start, end] h per draw (on the band's grid)."""
        return np.max(self.draws[output][:, self._window(start, end)], axis=1)

    def at(self, output: str, time: float, residual: bool = False) -> np.ndarray:
        """Value at ``time`` h per draw (a time of the grid), optionally with residual error."""
        k = np.flatnonzero(np.abs(self.times - time) < 1e-9)
        if k.size == 0:
            raise DataError(f"band: {time} h is not one of the forecast times")
        return (self.observed if residual else self.draws)[output][:, k[0]]

    def provenance_content(self) -> dict:
        """Everything the band holds, for digests (see :func:`medtwin.governance.provenance.result_view`)."""
        arrays = {f"draws.{k}": v for k, v in self.draws.items()}
        arrays.update({f"observed.{k}": v for k, v in self.observed.items()})
        return {"content": {"times": self.times, "units": dict(self.units), "failed": self.failed, **arrays},
                "outputs": arrays, "solver": {"method": "posterior-predictive", "backend": "numba"}}

    def to_frame(self):
        """Long table: time, output, median, p05, p25, p75, p95 (parameter uncertainty) and, for observed
        outputs, obs_p05 and obs_p95 (with residual error)."""
        import pandas as pd

        frames = []
        for name in self.draws:
            q = self.quantiles(name)
            data = {"TIME": self.times, "output": name, "unit": self.units.get(name, ""), "median": q[2],
                    "p05": q[0], "p25": q[1], "p75": q[3], "p95": q[4]}
            if name in self.observed:
                qo = self.quantiles(name, residual=True, q=(0.05, 0.95))
                data.update(obs_p05=qo[0], obs_p95=qo[1])
            frames.append(pd.DataFrame(data))
        return pd.concat(frames, ignore_index=True)
