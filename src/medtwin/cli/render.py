"""How results look on the terminal and in files: posterior tables, bands, recommendations (no computing here)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from medtwin.cli.edge import console

__all__ = ["json_ready", "plot_band", "plot_recommendation", "print_model_weights", "print_posterior",
           "recommendation_dict", "write_model_weights"]


def print_posterior(posterior) -> None:
    """The posterior table (prior and posterior medians, 90 % interval; R-hat and ESS for NUTS)."""
    table = Table(title=f"posterior of patient {posterior.data[-1].patient} ({posterior.method}, "
                        f"{posterior.status})", title_justify="left")
    diagnostics = posterior.diagnostics if posterior.method == "nuts" else {}
    sampled = "rhat" in diagnostics and "ess" in diagnostics
    columns = ("parameter", "unit", "prior median", "posterior median", "90 % interval")
    for col in columns + (("R-hat", "bulk ESS") if sampled else ()):
        table.add_column(col, justify="right")
    for k, row in enumerate(posterior.summary().itertuples()):
        cells = [row.parameter, row.unit, f"{row.prior_median:.4g}", f"{row.median:.4g}",
                 f"{row.p05:.4g} – {row.p95:.4g}"]
        if sampled:
            cells += [f"{float(diagnostics['rhat'][k]):.3f}", f"{float(diagnostics['ess'][k]):.0f}"]
        table.add_row(*cells)
    console.print(table)
    if sampled:
        console.print(f"NUTS: {diagnostics.get('chains', '?')} chains × {diagnostics.get('draws', '?')} draws; "
                      f"{posterior.message} (R-hat < 1.01 and no divergences: {posterior.status})", highlight=False)


def write_model_weights(posterior, out: Path) -> None:
    """``model_weights.csv`` (one row per candidate prior) for a model-averaged posterior; nothing otherwise."""
    if not hasattr(posterior, "weight_table"):
        return
    import pandas as pd

    pd.DataFrame(posterior.weight_table()).to_csv(out / "model_weights.csv", index=False)


def print_model_weights(posterior, out: Path) -> None:
    """The candidate models' weights (and the file they are in) for a model-averaged posterior."""
    if not hasattr(posterior, "weight_table"):
        return
    what = "selection" if posterior.mode == "select" else "averaging"
    table = Table(title=f"model {what} ({posterior.weighting} weights)", title_justify="left")
    for col in ("population", "model", "weight", "log evidence", "OFV (MAP)", "status"):
        table.add_column(col, justify="right")
    for row in posterior.weight_table():
        table.add_row(row["population"], row["model"], f"{row['weight']:.3f}", f"{row['log_evidence']:.3f}",
                      f"{row['ofv']:.3f}", row["status"])
    console.print(table)
    console.print(f"model_weights.csv: {out / 'model_weights.csv'}")


def plot_band(posterior, band, data, path: Path, window) -> None:
    """The individual fit or forecast with its bands and the levels; ``window`` (h) shaded when given."""
    from matplotlib.figure import Figure

    from medtwin.infer.plots import plot_individual

    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    plot_individual(posterior, band, data, ax=ax)
    if window is not None:
        ax.axvspan(*window, color="0.92", zorder=0, label="AUC24 window")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_recommendation(recommendation, data, path: Path) -> None:
    """Predicted exposure with 90 % bands under the current and the recommended regimen, with the levels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.8))
    ax = fig.add_subplot()
    output = "C"
    for band, label, color in ((recommendation.current, "current regimen", "tab:gray"),
                               (recommendation.predicted, "recommended", "tab:blue")):
        if band is None:
            continue
        lo, hi = band.interval(output, 0.9)
        ax.fill_between(band.times, lo, hi, color=color, alpha=0.25, label=f"{label}: 90 %")
        ax.plot(band.times, band.median(output), color=color, lw=1.5, label=f"{label}: median")
    if data is not None:
        ax.plot(data.times, data.values, "ko", ms=4, label="measured levels")
    window = recommendation.target.get("window_h")
    if window:
        ax.axvspan(*window, color="green", alpha=0.08, label="evaluation window")
    unit = recommendation.predicted.units.get(output, "") if recommendation.predicted is not None else ""
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{output} ({unit})")
    ax.set_title(recommendation.summary().splitlines()[0])
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def json_ready(value):
    """numpy scalars and arrays inside mappings and sequences as plain Python values."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def recommendation_dict(recommendation) -> dict:
    """The recommendation's explanation as JSON-ready data (bands summarised by their quantiles elsewhere)."""
    return json_ready({"kind": recommendation.kind, "status": recommendation.status, "action": recommendation.action,
                       "target": recommendation.target, "constraints": recommendation.constraints,
                       "active_constraints": recommendation.active_constraints,
                       "probabilities": recommendation.probabilities, "sensitivity": recommendation.sensitivity,
                       "runner_ups": recommendation.runner_ups, "message": recommendation.message,
                       "summary": recommendation.summary()})
