"""Plots of one patient's personalized forecast (matplotlib, no pyplot state).

:func:`plot_individual` draws a :class:`~medtwin.core.data.PredictiveBand`
the way a clinician reads it: the predictive median, the 50 % and 90 % bands
from parameter uncertainty (shaded), the 90 % band of a *new measurement*
(residual error included, dashed), the observations the posterior was fitted to
(filled points) and held-out or later ones (open points), the dose times (ticks
on the time axis) and an optional target window (e.g. a trough of 10–20 mg/L).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.core.data import PatientData
>>> from medtwin.infer.personalize import personalize
>>> from medtwin.io.population_file import load_population, shipped_population_path
>>> pop = load_population(shipped_population_path("pheno"))
>>> reg = Regimen.every(12.0, "h", 5.0, "mg", n=6)
>>> data = PatientData(reg, [2.0, 35.0, 59.0], [6.0, 9.5, 12.0], {"WGT": 1.2, "APGR": 7.0})
>>> post = personalize(pop, data.first(2))
>>> band = post.predict(reg, np.linspace(0.0, 72.0, 145), n_draws=300, seed=1)
>>> ax = plot_individual(post, band, held_out=data.rest(2), target=(15.0, 40.0))
>>> ax.get_xlabel(), ax.get_ylabel()
('time (h)', 'C (mg/L)')
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medtwin.errors import DataError

__all__ = ["plot_individual"]


def _batches(data) -> list:
    from medtwin.core.data import PatientData

    if data is None:
        return []
    batches = [data] if isinstance(data, PatientData) else list(data)
    bad = [type(b).__name__ for b in batches if not isinstance(b, PatientData)]
    if bad:
        raise DataError(f"plot_individual: observations must be PatientData values, got {bad[0]}")
    return batches


def _dose_times(regimen, start: float, end: float) -> np.ndarray:
    if regimen is None:
        return np.zeros(0)
    times = np.array(sorted({e.time for e in regimen.expanded() if e.amount > 0 or e.rate > 0}), dtype=float)
    return times[(times >= start - 1e-9) & (times <= end + 1e-9)]


def _points(ax, batches: Sequence, output: str, *, label: str, filled: bool, colour: str) -> None:
    """Observations of ``output`` (BLQ ones at their LLOQ as downward triangles)."""
    times, values, blq_t, blq_v = [], [], [], []
    for b in batches:
        if (b.output or output) != output:
            continue
        blq = np.asarray(b.blq, dtype=bool)
        times.append(np.asarray(b.times)[~blq])
        values.append(np.asarray(b.values)[~blq])
        if blq.any():
            blq_t.append(np.asarray(b.times)[blq])
            blq_v.append(np.asarray(b.lloq)[blq])
    if times and sum(t.size for t in times):
        ax.plot(np.concatenate(times), np.concatenate(values), ls="none", marker="o", ms=6, mew=1.5,
                color=colour, mfc=colour if filled else "white", label=label, zorder=5)
    if blq_t:
        ax.plot(np.concatenate(blq_t), np.concatenate(blq_v), ls="none", marker="v", ms=6, color=colour,
                mfc=colour if filled else "white", label=f"{label}: below LLOQ (at LLOQ)", zorder=5)


def plot_individual(posterior, band, data=None, *, output: str | None = None, ax=None,
                    target: tuple[float, float] | None = None, held_out=None, regimen=None, title: str | None = None):
    """Draw one patient's fit and forecast.

    Parameters
    ----------
    posterior : Posterior
        The patient's posterior (for the default data, regimen and observed output).
    band : PredictiveBand
        ``posterior.predict(regimen, times)`` on a time grid (h).
    data : PatientData or sequence of PatientData, optional
        Observations shown as filled points (default: the data the posterior was fitted to).
    output : str, optional
        Output to draw (default: the residual-error output, e.g. ``"C"``).
    ax : matplotlib Axes, optional
        Where to draw; a new :class:`matplotlib.figure.Figure` (no pyplot state) when omitted.
    target : (low, high), optional
        Target window (output unit) shaded across the plot, e.g. ``(10, 20)`` mg/L for a trough.
    held_out : PatientData or sequence of PatientData, optional
        Observations not used by the posterior (a validation or later levels), open points.
    regimen : Regimen, optional
        Doses drawn as ticks on the time axis (default: the regimen of the last data batch).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
        With, in order: ``lines[0]`` the median (``ydata`` = ``band.median(output)``), then the dashed 90 %
        residual-error bounds (when the band has them), the observations and the dose ticks; the
        shaded bands are ``collections`` (90 % then 50 %); the target window is a patch
        (:meth:`~matplotlib.axes.Axes.axhspan`).

    Raises
    ------
    DataError
        Unknown output, a malformed target or non-PatientData observations.

    Examples
    --------
    See the module docstring.
    """
    output = output or posterior.prior.residual.output
    if output not in band.draws:
        raise DataError(f"plot_individual: the band has no output {output!r}; have {sorted(band.draws)}")
    if target is not None:
        target = tuple(float(v) for v in target)
        if len(target) != 2 or not target[0] < target[1]:
            raise DataError(f"plot_individual: target must be (low, high) with low < high, got {target}")
    fitted = _batches(posterior.data if data is None else data)
    later = _batches(held_out)
    if regimen is None and (fitted or later):
        regimen = (fitted or later)[-1].regimen
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(8, 4.5)).add_subplot()
    unit = band.units.get(output, "")
    t = np.asarray(band.times, dtype=float)
    q = band.quantiles(output, q=(0.05, 0.25, 0.5, 0.75, 0.95))
    ax.plot(t, q[2], color="tab:blue", lw=2, label="median", zorder=4)
    ax.fill_between(t, q[0], q[4], color="tab:blue", alpha=0.15, lw=0, label="90 % (parameter uncertainty)")
    ax.fill_between(t, q[1], q[3], color="tab:blue", alpha=0.3, lw=0, label="50 % (parameter uncertainty)")
    if output in band.observed:
        lo, hi = band.interval(output, 0.9, residual=True)
        ax.plot(t, lo, color="tab:blue", ls="--", lw=1, label="90 % new measurement (with residual error)")
        ax.plot(t, hi, color="tab:blue", ls="--", lw=1)
    _points(ax, fitted, output, label="observed (fitted)", filled=True, colour="black")
    _points(ax, later, output, label="observed (held out)", filled=False, colour="tab:red")
    doses = _dose_times(regimen, t.min(), t.max()) if t.size else np.zeros(0)
    if doses.size:
        ax.plot(doses, np.zeros(doses.size), ls="none", marker="|", ms=12, mew=1.5, color="tab:green",
                transform=ax.get_xaxis_transform(), clip_on=False, label="dose", zorder=6)
    if target is not None:
        ax.axhspan(target[0], target[1], color="tab:green", alpha=0.1, lw=0,
                   label=f"target {target[0]:g}–{target[1]:g} {unit}".rstrip())
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{output} ({unit})" if unit else output)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return ax
