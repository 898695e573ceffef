"""``medtwin mre phantom`` and ``medtwin mre invert``: MR-elastography stiffness maps as recorded runs.

``phantom`` writes a synthetic acquisition (displacement images computed on a finer mesh, with noise) as
NIfTI or ``.npz``; ``invert`` reads one, runs the ``mre`` request through :func:`medtwin.workflows.run`
(signed provenance, audit entry; ``medtwin reproduce RUN_ID`` re-runs it) and writes the stiffness map
(NIfTI, PNG) and the ROI summary (JSON) into a new folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from medtwin.cli import edge
from medtwin.cli.edge import PURPOSES, OutFolder, check_out_file, console, default_actor, fail
from medtwin.errors import DataError, MedtwinError

__all__ = ["invert_command", "phantom_command", "register"]

mre_app = typer.Typer(no_args_is_help=True, help="MR elastography: synthetic phantoms and stiffness inversion.")

_KINDS = ("homogeneous", "inclusion", "liver")


def phantom_command(
    kind: str = typer.Argument(..., help=" | ".join(_KINDS)),
    out: Path = typer.Option(..., "--out", help="Displacement file to write (.nii.gz, .nii or .npz)."),
    pixels: int = typer.Option(64, "--pixels", min=9, max=512, help="Pixels a side."),
    fov_mm: float = typer.Option(100.0, "--fov-mm", min=5.0, max=500.0, help="Field of view (mm)."),
    frequency: float = typer.Option(60.0, "--frequency", min=1.0, max=1000.0, help="Vibration frequency (Hz)."),
    noise: float = typer.Option(0.03, "--noise", min=0.0, max=1.0, help="Noise level (0.03 = 3 % of the rms "
                                "amplitude, per real component)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
) -> None:
    """Write a synthetic MRE acquisition of a phantom (computed on a mesh twice as fine, P2 elements)."""
    from medtwin.imaging import homogeneous_phantom, inclusion_phantom, liver_phantom, synthesize
    from medtwin.io.mre_file import write_displacement

    try:
        if kind not in _KINDS:
            raise DataError(f"phantom kind must be one of {_KINDS}, not {kind!r}")
        check_out_file(out)
        L = fov_mm * 1e-3
        phantom = {"homogeneous": lambda: homogeneous_phantom(length=L),
                   "inclusion": lambda: inclusion_phantom(length=L, radius=0.15 * L),
                   "liver": lambda: liver_phantom(length=L)}[kind]()
        acq = synthesize(phantom, pixels, frequency=frequency, noise=noise, seed=seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_displacement(out, acq.data, acq.h, frequency)
    except (MedtwinError, typer.BadParameter) as exc:
        fail(exc)
    console.print(f"wrote {acq.data.shape[0]} displacement image(s) of {pixels}x{pixels} pixels "
                  f"({acq.h * 1e3:.3f} mm, {frequency:g} Hz, {noise:.1%} noise) of the {kind} phantom to {out}")


def invert_command(
    data: Path = typer.Argument(..., exists=True, dir_okay=False, help="Displacement file (.nii.gz/.nii/.npz)."),
    out: Path = typer.Option(..., "--out", help="New (or empty) folder for stiffness.nii.gz, stiffness.png, "
                             "summary.json."),
    frequency: Optional[float] = typer.Option(None, "--frequency", min=1.0, max=1000.0,
                                              help="Vibration frequency (Hz); required unless the .npz holds it."),
    mask: Optional[Path] = typer.Option(None, "--mask", exists=True, dir_okay=False,
                                        help="Integer label NIfTI: one ROI per non-zero label (default: the "
                                             "image without a 4-pixel border)."),
    regularisation: str = typer.Option("tv", "--regularisation", help="tv | tikhonov"),
    bootstrap: int = typer.Option(8, "--bootstrap", min=0, max=200, help="Bootstrap replicates for the CIs."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    table: str = typer.Option("mayo", "--cutoffs", help="Fibrosis cut-off table: mayo | liang2023"),
    rho: float = typer.Option(1000.0, "--density", min=500.0, max=3000.0, help="Tissue density (kg/m^3)."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Patient id (consent-checked for imaging)."),
    purpose: str = typer.Option("treatment", "--purpose", help=" | ".join(PURPOSES)),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The images are not identifiable patient data (say why)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
) -> None:
    """Stiffness map (regularised FEM inversion, Helmholtz side by side), ROI kPa with 95 % CI, fibrosis stage."""
    from medtwin import workflows
    from medtwin.imaging.plots import stiffness_figure
    from medtwin.io.mre_file import read_displacement, read_masks, write_stiffness, write_summary
    from medtwin.workflows.imaging import MRERequest

    folder = OutFolder(out)
    try:
        folder.check()
        u, h, stored_f = read_displacement(data)
        f = frequency if frequency is not None else stored_f
        if f is None:
            raise DataError(f"{data}: give --frequency (Hz): the file does not hold it")
        masks = read_masks(mask, u.shape[1:]) if mask is not None else None
        request = MRERequest(u, h, f, rho=rho, regularisation=regularisation, masks=masks, n_bootstrap=bootstrap,
                             seed=seed, table=table, patient=patient, purpose=None if open_data else purpose,
                             open_data=open_data)

        def write(result, access):
            out.mkdir(parents=True, exist_ok=True)
            write_stiffness(out / "stiffness.nii.gz", result.modulus, h)
            write_stiffness(out / "stiffness_helmholtz.nii.gz", result.helmholtz, h)
            fig = stiffness_figure({"regularised FEM (" + regularisation + ")": result.modulus,
                                    "Helmholtz (filtered)": result.helmholtz}, h=h)
            fig.savefig(out / "stiffness.png", dpi=110)
            write_summary(out / "summary.json", result, {"source": str(data)})

        with console.status("inverting"):
            result, record = workflows.run(request, edge.open_stores(), actor=actor or default_actor(),
                                           before_record=write)
    except (MedtwinError, typer.BadParameter) as exc:
        folder.discard()
        fail(exc)
    t = Table(title=f"MRE {f:g} Hz: alpha {result.inversion.alpha:.3g} ({result.status}), chi2 "
                    f"{result.inversion.chi2:.2f}", title_justify="left")
    for col in ("ROI", "pixels", "|G*| kPa (95% CI)", "G' kPa", "Helmholtz |G*| kPa", "stage"):
        t.add_column(col)
    for r in result.rois:
        t.add_row(r.name, str(r.n_pixels), f"{r.stiffness_kpa:.2f} ({r.stiffness_ci[0]:.2f}-{r.stiffness_ci[1]:.2f})",
                  f"{r.storage_kpa:.2f}", f"{r.helmholtz_stiffness_kpa:.2f}", r.stage)
    console.print(t)
    console.print(f"wrote stiffness.nii.gz, stiffness_helmholtz.nii.gz, stiffness.png, summary.json to {out}")
    console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce {record.run_id}`)")


def register(app: typer.Typer) -> None:
    """Add the ``mre`` command group (``phantom``, ``invert``) to *app*."""
    mre_app.command("phantom")(phantom_command)
    mre_app.command("invert")(invert_command)
    app.add_typer(mre_app, name="mre")
