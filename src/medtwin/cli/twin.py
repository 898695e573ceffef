"""``medtwin replay``: feed a recorded stream through a live twin (parse -> request -> workflows.run -> render)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medtwin.cli import edge
from medtwin.cli.edge import (PURPOSES, OutFolder, console, default_actor, err_console, fail, input_file,
                              with_option)
from medtwin.errors import MedtwinError

__all__ = ["register", "replay_command"]


def _order(values):
    """The row order of pandas' ``sort_values`` on a float column (quicksort, NaN last)."""
    import numpy as np

    nan = np.isnan(values)
    keep = np.flatnonzero(~nan)
    return np.concatenate([keep[values[keep].argsort(kind="quicksort")], np.flatnonzero(nan)])


def _plot(cols: dict, twin, path: Path) -> None:
    """replay.png from the tracked columns (:func:`medtwin.cli.table.columns` of the rows).

    Drawn on a ``Figure`` with the Agg canvas (pyplot, its backend machinery and the
    global figure registry are not needed to write a file).
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    parameters = list(twin.space.estimated)
    fig = Figure(figsize=(10, 3.2 * (1 + len(parameters))))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(parameters), 1, sharex=True, squeeze=False)
    ax = axes[0, 0]
    ok = np.flatnonzero(cols["accepted"].astype(bool))
    ok = ok[_order(cols["time_h"][ok])]
    outputs = cols["output"][ok]
    for output in sorted(set(outputs.tolist())):  # groupby("output"): sorted keys, rows in the sorted order
        part = ok[outputs == output]
        time, predicted = cols["time_h"][part], cols["predicted"][part]
        unit = twin.model.output(output).unit
        band = cols["predicted_sd"][part] * 1.6449
        ax.fill_between(time, predicted - band, predicted + band, alpha=0.25,
                        label=f"{output}: one-step forecast, 90 %")
        ax.plot(time, cols["estimate_mean"][part], lw=1.2, label=f"{output}: twin estimate")
        ax.plot(time, cols["measured"][part], ".", ms=3, color="k", label=f"{output}: measured ({unit})")
        ax.set_ylabel(f"{output} ({unit})")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{twin.model.name}: measured vs estimated ({twin.observer.name.upper()})")
    order = _order(cols["twin_time_h"])
    time = cols["twin_time_h"][order]
    for i, name in enumerate(parameters, start=1):
        ax = axes[i, 0]
        ax.fill_between(time, cols[f"{name}_p05"][order], cols[f"{name}_p95"][order], alpha=0.3, label="90 %")
        ax.plot(time, cols[f"{name}_median"][order], lw=1.2, label="median")
        ax.set_ylabel(f"{name} ({twin.model.parameter(name).unit})")
        ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (h)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _write_tables(result, out: Path) -> None:
    """tracked.csv, rejected.csv (as pandas' ``to_csv`` wrote them: tests/unit/test_replay_fast.py), alarms.json."""
    from medtwin.cli.table import write_csv

    write_csv(out / "tracked.csv", result.rows)
    write_csv(out / "rejected.csv", [{"row": r.row, "reason": r.reason, "item": repr(r.item)} for r in result.rejected],
              ["row", "reason", "item"])
    alarms = {"raised": list(result.raised), "active": [a.message for a in result.twin.alarms],
              "clock_offsets": list(result.clocks)}
    if result.verdict is not None:
        alarms["clock_verdict"] = result.verdict
    (out / "alarms.json").write_text(json.dumps(alarms, indent=2))


def _write_plot(result, out: Path) -> None:
    """replay.png, when at least one measurement was assimilated."""
    from medtwin.cli.table import columns

    cols = columns(result.rows)
    if len(result.rows) and cols["accepted"].astype(bool).any():
        _plot(cols, result.twin, out / "replay.png")


def replay_command(
    twin_spec: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="TWIN_SPEC",
                                     callback=input_file("twin specification", "mapping"),
                                     help="YAML/JSON twin specification (model, estimated parameters, noise, observer)."),
    stream: Path = typer.Option(..., "--stream", exists=True, dir_okay=False, callback=input_file("stream file"),
                                help="Recorded stream CSV: time_h, kind (obs|bolus|infusion), name, value, unit, ..."),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) output folder: tracked.csv, alarms.json, rejected.csv, twin.json, "
                                  "replay.png, provenance.json."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Patient id (when the stream has no patient_id)."),
    check_clocks: bool = typer.Option(False, "--check-clocks", help="Estimate every device's clock offset by "
                                      "profile likelihood (replays the stream once per candidate offset)."),
    purpose: str = typer.Option("treatment", "--purpose", help=" | ".join(PURPOSES)),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The data are not identifiable patient data (say why)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Feed a recorded stream through a twin; write the tracked state with bands, the alarms and a PNG."""
    import yaml

    from medtwin import workflows
    from medtwin.io.textfile import load_mapping, read_text
    from medtwin.io.twin_file import save_twin

    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        outputs.check()
        spec = load_mapping(twin_spec, what="twin specification")
        if "model" not in spec:
            raise MedtwinError(f"{twin_spec}: a twin specification is a mapping with at least 'model' and 'errors'")
        text = with_option("--stream", stream, read_text, stream, what="stream file", allow_empty=True)
        request = workflows.ReplayRequest(spec, text, patient=patient, check_clocks=check_clocks,
                                          purpose=None if open_data else purpose, open_data=open_data,
                                          source=f"--stream {stream}")

        def write(result, access):  # every output is written before the run is recorded
            out.mkdir(parents=True, exist_ok=True)
            _write_tables(result, out)
            save_twin(out / "twin.json", result.twin, access=access)
            _write_plot(result, out)

        with edge.ProgressBar("replaying", enabled=not no_progress, unit="") as bar:
            result, record = workflows.run(request, edge.open_stores(), actor=actor, progress=bar,
                                           before_record=write)
        (out / "provenance.json").write_text(json.dumps(record.as_dict(), indent=2, sort_keys=True))
    except (MedtwinError, OSError, yaml.YAMLError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    twin, model = result.twin, result.model
    n_ok = sum(1 for row in result.rows if row["accepted"])
    console.print(f"replayed {result.n_measurements} measurements ({n_ok} assimilated, {len(result.rejected)} "
                  f"rejected or dropped with reasons) through a {twin.observer.name.upper()} twin of {model.name}; "
                  f"twin at {twin.time:g} h")
    for name, p in twin.state().parameters.items():
        console.print(f"  {name}: median {p['median']:.4g} {model.parameter(name).unit} "
                      f"(90 % {p['p05']:.4g} - {p['p95']:.4g})")
    if result.verdict is not None and result.verdict["verdict"] == "no offset":
        console.print(f"clocks: {result.verdict['message']}", highlight=False)
    for alarm in result.raised:
        err_console.print(f"[yellow]alarm[/] {alarm['kind']} at {alarm['time_h']:g} h: {alarm['message']}",
                          highlight=False)
    console.print(f"wrote {out}/tracked.csv, alarms.json, rejected.csv, twin.json, replay.png, provenance.json "
                  f"(run {record.run_id}, signed)")


def register(app: typer.Typer) -> None:
    """Add ``replay`` to *app*."""
    app.command("replay")(replay_command)
