"""Replaying a recorded stream through a live twin, one arrival at a time (pure: no file, clock or database).

:func:`replay_stream` feeds the measurements in arrival order through
``Twin.assimilate`` and keeps one row per arrival (the twin's clock, the
measurement, whether it was accepted, the one-step forecast and its NIS, the
twin's estimate of the output and of every state and parameter) and every
alarm the first time it is raised.  :func:`clock_check` runs the profile
likelihood of every device's clock offset (:func:`medtwin.assimilate.alarms.check_clocks`)
and turns it into plain rows and, when a clock looks wrong, one more alarm.

Examples
--------
>>> import numpy as np
>>> from medtwin.twin.codec import twin_from_spec
>>> from medtwin.core.stream import Measurement
>>> from medtwin.core.events import Regimen
>>> spec = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
...         "errors": {"C": {"model": "proportional", "proportional": 0.1}}}
>>> twin = twin_from_spec(spec, inputs=Regimen.single(500.0))
>>> result = replay_stream(twin, [Measurement(time=2.0, output="C", value=20.0, unit="mg/L")])
>>> [row["accepted"] for row in result.rows], result.twin.time
([True], 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ClockRows", "ReplayTrace", "clock_check", "replay_stream"]


@dataclass(frozen=True)
class ReplayTrace:
    """What :func:`replay_stream` returns.

    Attributes
    ----------
    twin : Twin
        The twin after the last arrival.
    rows : tuple of dict
        One row per arrival (keys in :func:`replay_stream`).
    raised : tuple of dict
        Every alarm, once, when first raised: ``kind``, ``time_h``, ``message``, ``statistic``,
        ``raised_at_arrival`` (1-based).
    """

    twin: Any
    rows: tuple
    raised: tuple


def _row(twin, k: int, m, entry) -> dict:
    row = {"arrival": k + 1, "twin_time_h": twin.time, "time_h": m.time, "device": m.device, "output": m.output,
           "measured": m.value, "unit": m.unit, "accepted": entry is not None}
    if entry is not None:
        inn = entry.innovation
        row.update(measured=entry.measurement.value, unit=entry.measurement.unit, predicted=inn.predicted,
                   predicted_sd=inn.variance**0.5, nis=inn.nis, status=entry.status)
    lo, mid, hi = twin.output_band(m.output)
    row.update(estimate_mean=mid, estimate_p05=lo, estimate_p95=hi)
    state = twin.state()
    for name, s in state.states.items():
        row[f"{name}_mean"], row[f"{name}_sd"] = s["mean"], s["sd"]
    for name, p in state.parameters.items():
        row[f"{name}_median"], row[f"{name}_p05"], row[f"{name}_p95"] = p["median"], p["p05"], p["p95"]
    return row


def replay_stream(twin, measurements: Sequence, progress: Callable[[int, int], None] | None = None) -> ReplayTrace:
    """Assimilate one measurement at a time, in arrival order; a row per arrival and every alarm raised.

    Parameters
    ----------
    twin : Twin
        The starting twin (its settings hold the devices' clock offsets).
    measurements : sequence of Measurement
        In arrival order.
    progress : callable, optional
        ``progress(done, total)`` after every arrival.

    Returns
    -------
    ReplayTrace
        Row keys: ``arrival``, ``twin_time_h``, ``time_h``, ``device``, ``output``, ``measured``, ``unit``,
        ``accepted``; when accepted also ``predicted``, ``predicted_sd``, ``nis``, ``status``; always
        ``estimate_mean``/``_p05``/``_p95`` and ``<state>_mean``/``_sd``, ``<parameter>_median``/``_p05``/``_p95``.
    """
    rows, raised, seen = [], [], set()
    total = len(measurements)
    for k, m in enumerate(measurements):
        before = len(twin.history)
        twin = twin.assimilate([m])
        key = replace(m, time=m.time - float(twin.settings.clock_offsets.get(m.device, 0.0))).key()
        entry = None
        if len(twin.history) > before:  # accepted (a duplicate or a rejection leaves the history as it was)
            entry = next(e for e in reversed(twin.history) if e.measurement.key() == key)
        rows.append(_row(twin, k, m, entry))
        for alarm in twin.alarms:
            ident = (alarm.kind, alarm.message)
            if ident not in seen:
                seen.add(ident)
                raised.append({"kind": alarm.kind, "time_h": alarm.time, "message": alarm.message,
                               "statistic": dict(alarm.statistic), "raised_at_arrival": k + 1})
        if progress is not None:
            progress(k + 1, total)
    return ReplayTrace(twin, tuple(rows), tuple(raised))


@dataclass(frozen=True)
class ClockRows:
    """:func:`clock_check` as plain data: one row per device, the verdict, and the alarm when a clock is off."""

    rows: tuple
    verdict: dict
    alarm: dict | None


def clock_check(twin, measurements: Sequence) -> ClockRows:
    """Profile every device's clock offset from the starting *twin* over *measurements* (arrival order).

    Returns the per-device rows (``device``, ``offset_h``, ``lr_statistic``, ``p_value``, ``alarm``), the
    verdict (``verdict``, ``suspect``, ``message``) and, unless the verdict is ``"no offset"``, a
    ``clock-offset`` alarm carrying the strongest profile (raised at the last arrival).
    """
    from medtwin.assimilate.alarms import check_clocks

    check = check_clocks(twin, list(measurements))
    rows = tuple({"device": device, "offset_h": report.offset_h, "lr_statistic": report.lr_statistic,
                  "p_value": report.p_value, "alarm": report.alarm.message if report.alarm else None}
                 for device, report in check.reports.items())
    verdict = {"verdict": check.verdict, "suspect": check.suspect, "message": check.message}
    alarm = None
    if check.verdict != "no offset":
        best = max([*check.reports.values(), *([check.together] if check.together else [])],
                   key=lambda r: r.lr_statistic)
        alarm = {"kind": "clock-offset", "time_h": max(m.time for m in measurements), "message": check.message,
                 "statistic": {"offset_h": best.offset_h, "lr_statistic": best.lr_statistic,
                               "p_value": best.p_value},
                 "raised_at_arrival": len(measurements)}
    return ClockRows(rows, verdict, alarm)
