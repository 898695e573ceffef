"""Plotly figures of the dashboard, as plain JSON-ready dicts (``{"data": [...], "layout": {...}}``).

The browser draws them with plotly.js (``Plotly.newPlot``); every page also shows the same numbers as a table,
so a reader without JavaScript loses nothing but the picture.  Nothing here reads a database or a clock.

Examples
--------
>>> import numpy as np
>>> q = np.array([[1.0, 2.0], [1.5, 2.5], [2.0, 3.0], [2.5, 3.5], [3.0, 4.0]])
>>> fig = forecast_figure(np.array([0.0, 1.0]), q, [(0.5, 2.1)], output="C", unit="mg/L")
>>> [t["name"] for t in fig["data"] if t["showlegend"]]
['90 % band', '50 % band', 'median', 'measured']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medtwin.errors import DataError

__all__ = ["band_quantiles", "forecast_figure", "forest_figure", "posterior_figure"]

_BAND90 = "rgba(31, 119, 180, 0.18)"
_BAND50 = "rgba(31, 119, 180, 0.35)"


def _floats(values) -> list:
    """Finite floats as numbers, anything else as None (JSON null: a gap in the line)."""
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def band_quantiles(band, output: str, *, residual: bool = False) -> np.ndarray:
    """The 5/25/50/75/95 % quantiles of ``output`` in a PredictiveBand, shape (5, T)."""
    return np.asarray(band.quantiles(output, residual, q=(0.05, 0.25, 0.5, 0.75, 0.95)))


def _layout(title: str, xtitle: str, ytitle: str) -> dict:
    return {"title": {"text": title, "font": {"size": 15}}, "xaxis": {"title": {"text": xtitle}},
            "yaxis": {"title": {"text": ytitle}}, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "legend": {"orientation": "h", "y": -0.2}, "height": 360}


def forecast_figure(times, quantiles, measurements: Iterable[tuple[float, float]] = (), *, output: str,
                    unit: str, title: str | None = None, now: float | None = None,
                    target: tuple[float, float] | None = None) -> dict:
    """Forecast with its 50 % and 90 % bands, the median, and the measured values.

    Parameters
    ----------
    times : array (T,)
        h.
    quantiles : array (5, T)
        The 5, 25, 50, 75 and 95 % quantiles of the output (``unit``) at ``times``.
    measurements : iterable of (time h, value)
        Measured values of the output, in ``unit``.
    now : float, optional
        The twin's time (h): drawn as a vertical line.
    target : (low, high), optional
        A target range of the output drawn as a shaded strip.

    Raises
    ------
    DataError
        ``quantiles`` is not (5, len(times)).
    """
    t = np.asarray(times, dtype=float).ravel()
    q = np.asarray(quantiles, dtype=float)
    if q.shape != (5, t.size):
        raise DataError(f"forecast_figure: quantiles must have shape (5, {t.size}), got {q.shape}")
    x = _floats(t)
    label = f"{output} ({unit})"
    data = [
        {"type": "scatter", "mode": "lines", "x": x, "y": _floats(q[0]), "line": {"width": 0},
         "showlegend": False, "hoverinfo": "skip", "name": "5 %"},
        {"type": "scatter", "mode": "lines", "x": x, "y": _floats(q[4]), "line": {"width": 0},
         "fill": "tonexty", "fillcolor": _BAND90, "name": "90 % band"},
        {"type": "scatter", "mode": "lines", "x": x, "y": _floats(q[1]), "line": {"width": 0},
         "showlegend": False, "hoverinfo": "skip", "name": "25 %"},
        {"type": "scatter", "mode": "lines", "x": x, "y": _floats(q[3]), "line": {"width": 0},
         "fill": "tonexty", "fillcolor": _BAND50, "name": "50 % band"},
        {"type": "scatter", "mode": "lines", "x": x, "y": _floats(q[2]), "line": {"color": "#1f77b4", "width": 2},
         "name": "median"},
    ]
    pts = [(float(a), float(b)) for a, b in measurements]
    data.append({"type": "scatter", "mode": "markers", "x": [p[0] for p in pts], "y": [p[1] for p in pts],
                 "marker": {"color": "#d62728", "size": 8, "symbol": "circle"}, "name": "measured"})
    layout = _layout(title or f"{output}: forecast with 50 % and 90 % bands", "time (h)", label)
    shapes = []
    if now is not None and math.isfinite(now):
        shapes.append({"type": "line", "x0": now, "x1": now, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": "#555", "dash": "dot", "width": 1}})
    if target is not None:
        shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "y0": float(target[0]),
                       "y1": float(target[1]), "fillcolor": "rgba(44, 160, 44, 0.10)", "line": {"width": 0},
                       "layer": "below"})
    layout["shapes"] = shapes
    return {"data": _legend_only(data), "layout": layout}


def _legend_only(data: list) -> list:
    """The helper traces (5 % and 25 % edges) stay in the figure (the fills need them) but out of the legend."""
    named = {"90 % band", "50 % band", "median", "measured"}
    out = []
    for trace in data:
        trace = dict(trace)
        trace["showlegend"] = trace["name"] in named
        out.append(trace)
    return out


def posterior_figure(rows: Sequence[Mapping]) -> dict:
    """Parameter posteriors: median and 90 % interval of each parameter relative to its prior median.

    ``rows``: mappings with ``parameter``, ``unit``, ``median``, ``p05``, ``p95`` and optionally
    ``prior_median`` (model units).  Plotted as ratios to the prior median (1 = the population's typical
    value) on a log axis, so parameters of different units share one chart.
    """
    names, mid, lo, hi, text = [], [], [], [], []
    for r in rows:
        ref = float(r.get("prior_median") or r["median"])
        if not (ref > 0 and math.isfinite(ref)):
            raise DataError(f"posterior_figure: parameter {r.get('parameter')!r} has no positive reference value")
        names.append(f"{r['parameter']} ({r.get('unit', '')})")
        mid.append(float(r["median"]) / ref)
        lo.append((float(r["median"]) - float(r["p05"])) / ref)
        hi.append((float(r["p95"]) - float(r["median"])) / ref)
        text.append(f"{float(r['median']):.4g} [{float(r['p05']):.4g}, {float(r['p95']):.4g}] {r.get('unit', '')}")
    data = [{"type": "scatter", "mode": "markers", "x": mid, "y": names, "text": text, "name": "posterior",
             "hovertemplate": "%{y}: %{text}<extra></extra>",
             "error_x": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
             "marker": {"size": 9, "color": "#1f77b4"}}]
    layout = _layout("Parameter posteriors (median, 90 % interval) / prior median", "ratio to prior median", "")
    layout["xaxis"]["type"] = "log"
    layout["height"] = 120 + 40 * len(names)
    layout["shapes"] = [{"type": "line", "x0": 1, "x1": 1, "yref": "paper", "y0": 0, "y1": 1,
                         "line": {"color": "#888", "dash": "dot", "width": 1}}]
    return {"data": data, "layout": layout}


def forest_figure(rows: Sequence[Mapping], *, effect: str = "effect", null: float = 0.0) -> dict:
    """A forest plot: one row per subgroup with its estimate and confidence interval.

    ``rows``: mappings with ``label``, ``estimate``, ``low``, ``high`` (and optionally ``n``).
    """
    labels = [str(r["label"]) + (f" (n={r['n']})" if r.get("n") is not None else "") for r in rows]
    est = [float(r["estimate"]) for r in rows]
    data = [{"type": "scatter", "mode": "markers", "x": est, "y": labels, "name": effect,
             "error_x": {"type": "data", "symmetric": False,
                         "array": [float(r["high"]) - float(r["estimate"]) for r in rows],
                         "arrayminus": [float(r["estimate"]) - float(r["low"]) for r in rows]},
             "marker": {"symbol": "square", "size": 10, "color": "#333"}}]
    layout = _layout("Treatment effect by subgroup (estimate, confidence interval)", effect, "")
    layout["yaxis"]["autorange"] = "reversed"
    layout["height"] = 140 + 36 * len(labels)
    layout["shapes"] = [{"type": "line", "x0": null, "x1": null, "yref": "paper", "y0": 0, "y1": 1,
                         "line": {"color": "#888", "dash": "dot", "width": 1}}]
    return {"data": data, "layout": layout}
