"""Issue 20 item 3 (helper replayfast): `medtwin replay` without pandas, pyplot or numba, with the same files.

The reference is what the command did before: ``pandas.DataFrame(rows).to_csv`` and a pyplot figure
drawn from the DataFrame (kept here, verbatim apart from the function name).
"""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from medtwin.cli import twin as cli_twin
from medtwin.cli.table import columns, write_csv

from test_cli_replay import SPEC, _write_stream

CASES = {
    "mixed": [{"a": 1, "b": 0.5, "c": "x", "d": True, "e": None, "f": 1e16, "g": 1e-5, "h": 0.1 + 0.2},
              {"a": 2, "b": None, "c": None, "d": False, "e": None, "f": float("inf"), "g": np.float64(0.1),
               "h": -0.0}],
    "int with a gap": [{"a": 1}, {"a": None}],
    "bool with a gap": [{"a": True}, {"a": None}],
    "missing keys": [{"a": 1, "b": "s"}, {"c": 2.5}],
    "all NaN": [{"a": float("nan")}, {"a": float("nan")}],
    "quoting": [{"a": 'x,"y"', "b": "line\nbreak", "c": np.int64(3), "d": np.bool_(True)}],
    "str and numbers": [{"a": "x"}, {"a": 1.5}, {"a": 2}],
    "no rows": [],
    "extremes": [{"a": 123456789012345.6, "b": 5e-324, "c": 2**62, "d": 1.7976931348623157e308, "e": -1e-300}],
}


@pytest.mark.parametrize("name", list(CASES))
def test_write_csv_writes_what_pandas_to_csv_wrote(name):
    rows = CASES[name]
    reference, ours = io.StringIO(), io.StringIO()
    pd.DataFrame(rows).to_csv(reference, index=False)
    write_csv(ours, rows)
    assert ours.getvalue() == reference.getvalue()
    if rows:
        frame = pd.DataFrame(rows)
        for key, column in columns(rows).items():
            assert column.dtype == frame[key].dtype, key


def test_write_csv_with_named_columns_and_no_rows_writes_the_header():
    names = ["row", "reason", "item"]
    for rows in ([], [{"row": 3, "reason": "not a number", "item": "'ERR'"}]):
        reference, ours = io.StringIO(), io.StringIO()
        pd.DataFrame(rows, columns=names).to_csv(reference, index=False)
        write_csv(ours, rows, names)
        assert ours.getvalue() == reference.getvalue()


def _reference_plot(frame, twin, path):  # the command's plot before issue 20 item 3 (pandas + pyplot)
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


def _tracked_rows(n=60, seed=0):
    """Rows shaped like a replay's (two outputs, a rejected reading, arrival order not time order)."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, 24.0, n))
    rows = []
    for k in rng.permutation(n):
        y = 5.0 + np.sin(times[k] / 3.0)
        accepted = bool(k % 11)
        rows.append({"arrival": len(rows) + 1, "twin_time_h": float(times[k]), "time_h": float(times[k]),
                     "device": "lab", "output": "G" if k % 3 else "C", "measured": y + 0.1 * rng.normal(),
                     "unit": "mmol/L", "accepted": accepted, "predicted": y if accepted else None,
                     "predicted_sd": 0.3 if accepted else None, "status": "ok" if accepted else "rejected",
                     "estimate_mean": y + 0.05, "SI_median": 0.02 + 0.001 * k, "SI_p05": 0.01, "SI_p95": 0.05})
    return rows


def test_replay_plot_equals_the_pandas_and_pyplot_reference(tmp_path):
    from types import SimpleNamespace

    unit = SimpleNamespace(unit="mmol/L")
    twin = SimpleNamespace(space=SimpleNamespace(estimated=("SI",)), observer=SimpleNamespace(name="ukf"),
                           model=SimpleNamespace(name="icing", output=lambda name: unit,
                                                 parameter=lambda name: SimpleNamespace(unit="L/(mU*h)")))
    rows = _tracked_rows()
    cli_twin._plot(columns(rows), twin, tmp_path / "new.png")
    _reference_plot(pd.DataFrame(rows), twin, tmp_path / "reference.png")
    assert (tmp_path / "new.png").read_bytes() == (tmp_path / "reference.png").read_bytes()


def test_a_replay_process_loads_neither_pandas_nor_numba_nor_pyplot_nor_jax(tmp_path):
    spec, stream, out = tmp_path / "twin.yaml", tmp_path / "stream.csv", tmp_path / "out"
    spec.write_text(yaml.safe_dump(SPEC))
    _write_stream(stream)
    probe = ("import sys\nfrom medtwin.cli import app\ntry:\n    app()\nexcept SystemExit as e:\n    assert not e.code\n"
             "print(sorted(m for m in ('pandas', 'numba', 'matplotlib.pyplot', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, "replay", str(spec), "--stream", str(stream), "--out",
                           str(out), "--open-data", "synthetic test patient", "--no-progress"],
                          capture_output=True, text=True, env={**__import__("os").environ,
                                                                "MEDTWIN_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (out / "replay.png").exists()
