"""``medtwin replay``: feed a recorded stream through a live twin (registered on :data:`medtwin.cli.app`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from medtwin.cli import _PURPOSES, _data_access, _default_actor, _fail, _open_stores, app, console, err_console
from medtwin.cli_edge import OutFolder, input_file, with_option
from medtwin.errors import MedtwinError


def _enable_jax_cache() -> None:
    """Keep JAX's compiled observers on disk under the data home, as numba keeps the kernels.

    The observers compile once per model and settings (about 1-3 s); with the
    persistent cache a later ``medtwin replay`` of the same twin reloads them.
    Set here, in the shell, because it is a process-wide JAX setting.
    """
    import jax

    from medtwin.io.storage import data_home

    jax.config.update("jax_compilation_cache_dir", str(data_home() / "jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _replay_rows(twin, measurements, progress):
    """Assimilate one measurement at a time, in arrival order; a row per arrival and every alarm raised."""
    rows, raised, seen = [], [], set()
    for k, m in enumerate(measurements):
        before = len(twin.history)
        twin = twin.assimilate([m])
        key = replace(m, time=m.time - float(twin.settings.clock_offsets.get(m.device, 0.0))).key()
        entry = None
        if len(twin.history) > before:  # accepted (a duplicate or a rejection leaves the history as it was)
            entry = next(e for e in reversed(twin.history) if e.measurement.key() == key)
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
        for alarm in twin.alarms:
            key = (alarm.kind, alarm.message)
            if key not in seen:
                seen.add(key)
                raised.append({"kind": alarm.kind, "time_h": alarm.time, "message": alarm.message,
                               "statistic": dict(alarm.statistic), "raised_at_arrival": k + 1})
        rows.append(row)
        progress(k + 1)
    return twin, rows, raised


def _plot(frame, twin, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parameters = list(twin.space.estimated)
    fig, axes = plt.subplots(1 + len(parameters), 1, figsize=(10, 3.2 * (1 + len(parameters))), sharex=True,
                             squeeze=False)
    ax = axes[0, 0]
    ok = frame[frame["accepted"]].sort_values("time_h")
    for output, part in ok.groupby("output"):
        unit = twin.model.output(output).unit
        band = part["predicted_sd"] * 1.6449
        ax.fill_between(part["time_h"], part["predicted"] - band, part["predicted"] + band, alpha=0.25,
                        label=f"{output}: one-step forecast, 90 %")
        ax.plot(part["time_h"], part["estimate_mean"], lw=1.2, label=f"{output}: twin estimate")
        ax.plot(part["time_h"], part["measured"], ".", ms=3, color="k", label=f"{output}: measured ({unit})")
        ax.set_ylabel(f"{output} ({unit})")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{twin.model.name}: measured vs estimated ({twin.observer.name.upper()})")
    frame = frame.sort_values("twin_time_h")
    for i, name in enumerate(parameters, start=1):
        ax = axes[i, 0]
        ax.fill_between(frame["twin_time_h"], frame[f"{name}_p05"], frame[f"{name}_p95"], alpha=0.3, label="90 %")
        ax.plot(frame["twin_time_h"], frame[f"{name}_median"], lw=1.2, label="median")
        ax.set_ylabel(f"{name} ({twin.model.parameter(name).unit})")
        ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (h)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@app.command("replay")
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
    purpose: str = typer.Option("treatment", "--purpose", help=" | ".join(_PURPOSES)),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The data are not identifiable patient data (say why)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Feed a recorded stream through a twin; write the tracked state with bands, the alarms and a PNG."""
    import pandas as pd
    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from medtwin.assimilate.alarms import check_clocks as check_clocks_of
    from medtwin.twin.codec import twin_from_spec
    from medtwin.governance.provenance import record_for_result, sign
    from medtwin.io.stream_file import read_stream
    from medtwin.io.textfile import load_mapping
    from medtwin.io.twin_file import save_twin
    from medtwin.models import get_model

    actor = actor or _default_actor()
    outputs = OutFolder(out)
    try:
        outputs.check()
        _enable_jax_cache()
        spec = load_mapping(twin_spec, what="twin specification")
        if "model" not in spec:
            raise MedtwinError(f"{twin_spec}: a twin specification is a mapping with at least 'model' and 'errors'")
        model = get_model(spec["model"])
        stores = _open_stores()
        access = _data_access(stores, actor, purpose, open_data)
        data = with_option("--stream", stream, read_stream, stream, model=model, access=access, patient=patient)
        start = twin_from_spec(spec, inputs=data.regimen, patient=data.patient)
        measurements = list(data.measurements)
        progress = Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeElapsedColumn(), console=err_console, transient=True, disable=no_progress)
        with progress:
            task = progress.add_task("replay", total=len(measurements))
            twin, rows, raised = _replay_rows(start, measurements, lambda k: progress.update(task, completed=k))
        clocks, verdict = [], None
        if check_clocks and measurements:
            check = check_clocks_of(start, measurements)
            for device, report in check.reports.items():
                clocks.append({"device": device, "offset_h": report.offset_h, "lr_statistic": report.lr_statistic,
                               "p_value": report.p_value, "alarm": report.alarm.message if report.alarm else None})
            verdict = {"verdict": check.verdict, "suspect": check.suspect, "message": check.message}
            if check.verdict != "no offset":
                best = max([*check.reports.values(), *([check.together] if check.together else [])],
                           key=lambda r: r.lr_statistic)
                raised.append({"kind": "clock-offset", "time_h": max(m.time for m in measurements),
                               "message": check.message, "statistic": {"offset_h": best.offset_h,
                                                                       "lr_statistic": best.lr_statistic,
                                                                       "p_value": best.p_value},
                               "raised_at_arrival": len(measurements)})
        out.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows)
        frame.to_csv(out / "tracked.csv", index=False)
        rejected = list(data.rejected) + list(data.duplicates) + list(twin.rejected)
        pd.DataFrame([{"row": r.row, "reason": r.reason, "item": repr(r.item)} for r in rejected],
                     columns=["row", "reason", "item"]).to_csv(out / "rejected.csv", index=False)
        alarms = {"raised": raised, "active": [a.message for a in twin.alarms], "clock_offsets": clocks}
        if verdict is not None:
            alarms["clock_verdict"] = verdict
        (out / "alarms.json").write_text(json.dumps(alarms, indent=2))
        save_twin(out / "twin.json", twin, access=access)
        if len(frame) and frame["accepted"].any():
            _plot(frame, twin, out / "replay.png")
        record = sign(record_for_result("replay", model, {"twin_spec": spec, "stream": stream.read_text()}, twin,
                                        actor), stores.key)
        (out / "provenance.json").write_text(json.dumps(record.as_dict(), indent=2, sort_keys=True))
        stores.log.append(actor, "twin.replay", {"run_id": record.run_id, "model": model.name,
                                                 "n_measurements": len(measurements),
                                                 "output_digest": record.output_digest}, patient=data.patient)
    except (MedtwinError, OSError, yaml.YAMLError, typer.BadParameter) as exc:
        outputs.discard()
        _fail(exc)
    n_ok = int(frame["accepted"].sum()) if len(frame) else 0
    console.print(f"replayed {len(measurements)} measurements ({n_ok} assimilated, {len(rejected)} rejected or dropped "
                  f"with reasons) through a {twin.observer.name.upper()} twin of {model.name}; twin at {twin.time:g} h")
    for name, p in twin.state().parameters.items():
        console.print(f"  {name}: median {p['median']:.4g} {model.parameter(name).unit} "
                      f"(90 % {p['p05']:.4g} - {p['p95']:.4g})")
    if verdict is not None and verdict["verdict"] == "no offset":
        console.print(f"clocks: {verdict['message']}", highlight=False)
    for alarm in raised:
        err_console.print(f"[yellow]alarm[/] {alarm['kind']} at {alarm['time_h']:g} h: {alarm['message']}",
                          highlight=False)
    console.print(f"wrote {out}/tracked.csv, alarms.json, rejected.csv, twin.json, replay.png, provenance.json "
                  f"(run {record.run_id}, signed)")
