"""Failure-mode alarms of a live twin: misspecification, timing misalignment, feedback loops.

* **Model misspecification.**  When the model and its noise levels are right,
  each standardized innovation is N(0, 1), so the sum of the normalised
  innovations squared (NIS) over a window of W measurements is χ²(W).  A sum
  outside the two-sided χ² band at ``level`` raises an alarm with the
  statistic and the band (above: the model or its noise is wrong or the
  patient changed; below: the noise is overstated and the twin is too
  cautious) (Bar-Shalom, Li & Kirubarajan 2001, §5.4).
* **Timing misalignment.**  :func:`detect_clock_offset` estimates a device's
  clock offset by profile likelihood: the stream is replayed with that
  device's times shifted over a grid of offsets, and the offset with the
  highest total log-likelihood is compared with zero by a likelihood-ratio
  test (χ²(1)).  Every offset is scored on the same readings: a reading that
  some candidate shift would move before the start of the twin's stored
  history is left out for all of them (otherwise a shift that drops readings
  gains likelihood by having fewer terms).  A significant offset is reported
  as an alarm and can be set in ``TwinSettings.clock_offsets``.
  :func:`check_clocks` profiles every device and says which device's clock is
  most likely wrong, or that it cannot tell (several devices fit a shift
  about equally well, e.g. when the dose records' clock is the one off).
* **Feedback loops.**  Measurements taken while the twin's own
  recommendation was being followed (``Measurement.under_advice``) are
  flagged: data generated under the twin's policy are not independent of the
  twin, and learning from them uncritically confirms the twin's own errors.
  :func:`learning_weights` gives the weights later learning should use
  (exclude or down-weight them).
* **Regime change**: when the twin's CUSUM (``TwinSettings.regime_detector``)
  fires on the standardized innovations, the estimated parameters are made
  plastic again and the change is reported with its estimated onset.
* **Numerical failure** of an update is reported with the times affected.

Examples
--------
>>> from medtwin.assimilate.beliefs import Innovation
>>> quiet = [Innovation(float(t), "C", 1.0, 1.0, 1.0, 0.0) for t in range(12)]
>>> misspecification(quiet, window=12, level=0.99).kind   # NIS sum 0: far below the band
'misspecification'
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
from scipy import special

from medtwin.assimilate.beliefs import FAILED, Innovation
from medtwin.errors import DataError


@dataclass(frozen=True)
class Alarm:
    """One alarm: what, when (h), in words, and the numbers behind it."""

    kind: str
    time: float
    message: str
    statistic: Mapping[str, float] = field(default_factory=dict)


@lru_cache(maxsize=64)
def nis_band(window: int, level: float) -> tuple[float, float]:
    """Two-sided χ²(window) band at ``level`` for the NIS sum over ``window`` innovations."""
    # chi2.ppf(q, k) = 2 P⁻¹(k/2, q) with P the regularised lower incomplete gamma (scipy.special: scipy.stats
    # alone takes ~1.5 s to import on the reference machine, a third of the replay budget).
    return (float(2.0 * special.gammaincinv(window / 2.0, (1 - level) / 2)),
            float(2.0 * special.gammaincinv(window / 2.0, (1 + level) / 2)))


def misspecification(innovations: Sequence[Innovation], *, window: int = 12, level: float = 0.99) -> Alarm | None:
    """Alarm when the NIS sum of the last *completed* block of ``window`` innovations leaves its χ² band.

    Blocks do not overlap (innovations 1..W, W+1..2W, ...), so the false-alarm
    rate is ``1 − level`` per block, not inflated by re-testing overlapping
    windows at every measurement; an alarm stays up until the next block is
    complete.  Returns None while the test passes (or before the first block).
    """
    usable = [i for i in innovations if math.isfinite(i.nis)]
    complete = len(usable) - len(usable) % window
    if complete < window:
        return None
    recent = usable[complete - window: complete]
    total = float(sum(i.nis for i in recent))
    low, high = nis_band(window, level)
    if low <= total <= high:
        return None
    side = "above" if total > high else "below"
    why = ("the model or its noise levels do not explain the data (or the patient has changed)" if side == "above"
           else "the stated noise is larger than the data show: forecasts are too wide")
    return Alarm("misspecification", recent[-1].time,
                 f"NIS over the {window} measurements up to {recent[-1].time:g} h = {total:.1f}, {side} the "
                 f"{level:.0%} chi-square band [{low:.1f}, {high:.1f}]: {why}",
                 {"nis_sum": total, "low": low, "high": high, "window": float(window), "level": level})


def feedback_loop(history, flagged_times: Sequence[float] | None = None) -> Alarm | None:
    """Alarm counting the measurements taken while the twin's own advice was followed."""
    if flagged_times is None:
        flagged_times = [e.measurement.time for e in history if e.measurement.under_advice]
    if not flagged_times:
        return None
    share = len(flagged_times) / len(history)
    return Alarm("feedback-loop", flagged_times[-1],
                 f"{len(flagged_times)} of {len(history)} measurements ({share:.0%}) were taken while the twin's own "
                 "recommendation was followed; later learning weights or excludes them (learning_weights)",
                 {"n_flagged": float(len(flagged_times)), "share": share})


def numerical_failures(history, failed_times: Sequence[float] | None = None) -> Alarm | None:
    """Alarm counting the updates that failed numerically."""
    if failed_times is None:
        failed_times = [e.measurement.time for e in history if e.status == FAILED]
    if not failed_times:
        return None
    return Alarm("numerical-failure", failed_times[-1],
                 f"{len(failed_times)} update(s) failed numerically (first at {failed_times[0]:g} h); the belief was "
                 "kept as it was", {"n_failed": float(len(failed_times))})


def evaluate(twin) -> tuple[Alarm, ...]:
    """Every alarm that holds for a twin now (one pass over the history: a live twin calls this per update)."""
    window, history = twin.settings.nis_window, twin.history
    failed, flagged = [], []
    for e in history:
        if e.status == FAILED:
            failed.append(e.measurement.time)
        if e.measurement.under_advice:
            flagged.append(e.measurement.time)
    n_ok = len(history) - len(failed)
    skip = n_ok % window  # innovations after the last complete block
    block = []
    if n_ok >= window:
        for e in reversed(history):
            if e.status == FAILED:
                continue
            if skip:
                skip -= 1
                continue
            block.append(e.innovation)
            if len(block) == window:
                break
        block.reverse()
    changes = [e for e in history if e.regime_change is not None]
    regime = None
    if changes:
        last = changes[-1]
        regime = Alarm("regime-change", last.measurement.time,
                       f"regime change detected at {last.measurement.time:g} h (CUSUM on standardized innovations; "
                       f"estimated onset {last.regime_change:g} h): the parameters were made plastic again "
                       f"(variance x{twin.settings.regime_inflation:g}); {len(changes)} change(s) so far",
                       {"onset_h": float(last.regime_change), "n_changes": float(len(changes))})
    found = [misspecification(block, window=window, level=twin.settings.nis_level),
             feedback_loop(history, flagged), numerical_failures(history, failed), regime]
    return tuple(a for a in found if a is not None)


def learning_weights(history, *, policy: str = "exclude", weight: float = 0.5) -> np.ndarray:
    """Per-measurement weights for later learning: 1, or ``0``/``weight`` for data taken under the twin's advice.

    Examples
    --------
    >>> from types import SimpleNamespace as E
    >>> h = [E(measurement=E(under_advice=False)), E(measurement=E(under_advice=True))]
    >>> learning_weights(h, policy="downweight", weight=0.25).tolist()
    [1.0, 0.25]
    """
    if policy not in ("exclude", "downweight", "keep"):
        raise DataError(f"learning_weights: policy must be 'exclude', 'downweight' or 'keep', not {policy!r}")
    flagged = np.array([e.measurement.under_advice for e in history], bool)
    low = {"exclude": 0.0, "downweight": float(weight), "keep": 1.0}[policy]
    return np.where(flagged, low, 1.0)


@dataclass(frozen=True)
class ClockOffsetReport:
    """Profile-likelihood estimate of one device's clock offset.

    Attributes
    ----------
    device : str
    offset_h : float
        Estimated offset (h): true time = device time − offset.
    offsets_h, loglik : ndarray
        The grid and the total log-likelihood of the stream at each offset.
    lr_statistic : float
        2·(max log-likelihood − log-likelihood at zero offset), χ²(1) under no offset.
    p_value : float
    alarm : Alarm or None
        Set when the offset is significant at ``level``.
    """

    device: str
    offset_h: float
    offsets_h: np.ndarray
    loglik: np.ndarray
    lr_statistic: float
    p_value: float
    alarm: Alarm | None


def detect_clock_offset(twin, measurements, device: str, *, offsets_h=None, level: float = 0.99) -> ClockOffsetReport:
    """Estimate ``device``'s clock offset by replaying ``measurements`` through ``twin`` over a grid of offsets.

    Every offset is scored on the same readings (see :func:`_common_readings`).

    Parameters
    ----------
    twin : Twin
        The twin at the start of the stream (before these measurements).
    measurements : sequence of Measurement
        The stream (every device; only ``device``'s times are shifted).
    offsets_h : array_like, optional
        Candidate offsets, h (default: −1 h to +1 h every 5 min; must include 0).
    level : float
        Significance level of the likelihood-ratio test.
    """
    grid = _offset_grid(offsets_h)
    if not any(m.device == device for m in measurements):
        raise DataError(f"detect_clock_offset: no measurement from device {device!r}")
    common = _common_readings(twin, measurements, {device}, grid)
    return _report(device, grid, _profile(twin, common, {device}, grid), level, measurements)


def _offset_grid(offsets_h) -> np.ndarray:
    grid = np.round(np.arange(-12, 13) / 12.0, 12) if offsets_h is None else np.asarray(offsets_h, dtype=float)
    if grid.ndim != 1 or not np.all(np.isfinite(grid)) or not np.any(np.abs(grid) < 1e-12):
        raise DataError("detect_clock_offset: the offset grid must be finite and include 0 h")
    return grid


def _common_readings(twin, measurements, devices, grid: np.ndarray) -> list:
    """The readings every candidate offset keeps: the shifted ``devices``' readings that no shift in ``grid``
    moves before the start of the twin's stored history (where the twin would refuse them as too late), and
    the other devices' readings."""
    oldest = twin.checkpoints[0].belief.time if twin.checkpoints else twin.time
    latest_shift = float(np.max(grid))
    out = []
    for m in measurements:
        if m.device in devices:
            try:
                if not float(m.time) - latest_shift >= oldest:
                    continue
            except (TypeError, ValueError):
                pass  # an unreadable time: screening rejects it the same way at every offset
        out.append(m)
    if not any(m.device in devices for m in out):
        raise DataError(f"detect_clock_offset: every reading of {sorted(devices)} lies within {latest_shift:g} h "
                        "of the twin's start, where a shifted clock cannot be told apart")
    return out


def _profile(twin, readings, devices, grid: np.ndarray) -> np.ndarray:
    """Total log-likelihood of ``readings`` with every device in ``devices`` shifted by each offset of ``grid``."""
    loglik = np.empty(len(grid))
    counts = np.empty(len(grid), dtype=int)
    for k, offset in enumerate(grid):
        offsets = {**twin.settings.clock_offsets, **{d: float(offset) for d in devices}}
        replayed = replace(twin, settings=replace(twin.settings, clock_offsets=offsets)).assimilate(readings)
        values = [e.innovation.loglik for e in replayed.history]
        counts[k] = len(values)
        loglik[k] = float(np.sum(values)) if values and np.all(np.isfinite(values)) else -np.inf
    # the same readings for every offset: a shift that lost one (rejected for another reason) is not comparable
    loglik[counts != counts[int(np.argmin(np.abs(grid)))]] = -np.inf
    return loglik


def _report(device: str, grid, loglik, level: float, measurements) -> ClockOffsetReport:
    best = int(np.argmax(loglik))
    zero = int(np.argmin(np.abs(grid)))
    lr = float(2.0 * (loglik[best] - loglik[zero]))
    p_value = float(special.gammaincc(0.5, max(lr, 0.0) / 2.0))  # chi2.sf(lr, 1)
    alarm = None
    if p_value < 1 - level and best != zero:
        alarm = Alarm("clock-offset", float(max(m.time for m in measurements)),
                      f"device {device!r}: its clock appears offset by {grid[best] * 60:+.0f} min (the response follows "
                      f"the inputs {'later' if grid[best] > 0 else 'earlier'} than the model allows; likelihood ratio "
                      f"{lr:.1f}, p = {p_value:.2g}); set clock_offsets={{{device!r}: {grid[best]:g}}} after checking",
                      {"offset_h": float(grid[best]), "lr_statistic": lr, "p_value": p_value})
    return ClockOffsetReport(device, float(grid[best]), grid, loglik, lr, p_value, alarm)


#: The hypothesis "every device is shifted alike", i.e. the dose records' clock is the one off.
ALL_DEVICES = "*"


@dataclass(frozen=True)
class ClockCheck:
    """Every device's clock-offset profile and the verdict: which clock is most likely wrong, if any.

    Attributes
    ----------
    reports : dict device -> ClockOffsetReport
        One profile per device (that device shifted, the others not), all on the same readings.
    together : ClockOffsetReport or None
        Every device shifted alike (device ``"*"``): the dose records' clock off by minus that offset; None
        with a single device (where it is the device's own profile).
    suspect : str or None
        The device whose clock is most likely wrong; None when no offset is significant, when the dose
        records' clock is the likely one, or when the likelihood does not separate the candidates.
    verdict : {"no offset", "device", "dose records", "cannot tell"}
    message : str
        The verdict in words.
    """

    reports: Mapping[str, ClockOffsetReport]
    together: ClockOffsetReport | None
    suspect: str | None
    verdict: str
    message: str


def check_clocks(twin, measurements, *, devices=None, offsets_h=None, level: float = 0.99) -> ClockCheck:
    """Profile every device's clock offset and say which clock is most likely wrong, or that it cannot tell.

    The candidates are "device d is off" for every device and, with several
    devices, "every device is off alike" (the dose records' clock is wrong),
    each profiled over ``offsets_h`` on one common set of readings, so their
    maximum log-likelihoods compare directly.  The best candidate is named
    when its offset is significant at ``level`` and its likelihood-ratio
    statistic exceeds the runner-up's by more than the χ²(1) critical value at
    ``level``; otherwise the answer is "cannot tell".  With a single device
    the offset is relative to the dose records, and which of the two clocks
    is wrong cannot be told from the data: the message says so.

    Examples
    --------
    >>> r = lambda d, lr: ClockOffsetReport(d, 0.5, np.zeros(1), np.zeros(1), lr, 0.0, Alarm("clock-offset", 0.0, ""))
    >>> _verdict({"cgm": r("cgm", 40.0), "lab": r("lab", 1.0)}, r("*", 30.0), 0.99)[:2]
    ('cgm', 'device')
    >>> _verdict({"cgm": r("cgm", 40.0), "lab": r("lab", 1.0)}, r("*", 38.0), 0.99)[:2]
    (None, 'cannot tell')
    """
    devices = sorted({m.device for m in measurements}) if devices is None else list(devices)
    if not devices:
        raise DataError("check_clocks: no measurements")
    grid = _offset_grid(offsets_h)
    missing = [d for d in devices if not any(m.device == d for m in measurements)]
    if missing:
        raise DataError(f"check_clocks: no measurement from device(s) {missing}")
    common = _common_readings(twin, measurements, set(devices), grid)
    reports = {d: _report(d, grid, _profile(twin, common, {d}, grid), level, measurements) for d in devices}
    together = (_report(ALL_DEVICES, grid, _profile(twin, common, set(devices), grid), level, measurements)
                if len(devices) > 1 else None)
    return ClockCheck(reports, together, *_verdict(reports, together, level))


def _verdict(reports, together, level: float) -> tuple[str | None, str, str]:
    candidates = dict(reports)
    if together is not None:
        candidates[ALL_DEVICES] = together
    ranked = sorted(candidates, key=lambda d: -candidates[d].lr_statistic)
    best = candidates[ranked[0]]
    shift = f"{best.offset_h * 60:+.0f} min"
    if best.alarm is None:
        return None, "no offset", f"no clock offset found (devices {', '.join(sorted(reports))}; level {level:g})"
    if len(candidates) == 1:
        return best.device, "device", (f"device {best.device!r} is offset by {shift} from the dose records "
                                       f"(likelihood ratio {best.lr_statistic:.1f}); with one device, its clock "
                                       "cannot be told from the dose records' clock: check both")
    critical = float(2.0 * special.gammainccinv(0.5, 1.0 - level))  # chi2.ppf(level, 1)
    runner = candidates[ranked[1]]
    margin = best.lr_statistic - runner.lr_statistic

    def name(r):
        return "every device alike (the dose records' clock)" if r.device == ALL_DEVICES else f"device {r.device!r}"

    if margin <= critical:
        return None, "cannot tell", (f"cannot tell which clock is wrong: {name(best)} off by {shift} (likelihood "
                                     f"ratio {best.lr_statistic:.1f}) and {name(runner)} off by "
                                     f"{runner.offset_h * 60:+.0f} min ({runner.lr_statistic:.1f}) fit about equally "
                                     f"well (margin {margin:.1f} <= {critical:.1f})")
    if best.device == ALL_DEVICES:
        return None, "dose records", (f"every device is offset alike by {shift} (likelihood ratio "
                                      f"{best.lr_statistic:.1f}, {margin:.1f} above {name(runner)}): the dose "
                                      "records' clock is most likely wrong; check the pump and charting times")
    return best.device, "device", (f"device {best.device!r}'s clock is most likely wrong: offset {shift} "
                                   f"(likelihood ratio {best.lr_statistic:.1f}, {margin:.1f} above {name(runner)}); "
                                   f"set clock_offsets={{{best.device!r}: {best.offset_h:g}}} after checking")
