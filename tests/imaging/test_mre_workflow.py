"""MRE files (NumPy, NIfTI), fibrosis staging from the published cut-offs, the recorded ``mre`` run and
``medtwin mre`` as a user runs it (record, reproduce bit-identically)."""

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.errors import ConsentError, DataError
from medtwin.imaging import fibrosis_stage, homogeneous_phantom, synthesize
from medtwin.imaging.elastogram import CUTOFFS
from medtwin.io.mre_file import read_displacement, read_masks, write_displacement, write_stiffness
from medtwin.workflows import reproduce_run, run
from medtwin.workflows.imaging import MRERequest
from medtwin.workflows.stores import open_stores

runner = CliRunner()


@pytest.mark.parametrize("kpa, mayo, liang", [(2.0, "normal", "<F2"), (2.7, "normal or inflammation", "<F2"),
                                              (3.2, "F1-F2", ">=F2"), (3.6, "F2-F3", ">=F3"),
                                              (4.6, "F3-F4", "F4"), (6.4, "F4", "F4")])
def test_stages_follow_the_published_cutoffs(kpa, mayo, liang):
    """Mayo thresholds (Venkatesh & Ehman 2014) and the LITMUS IPD meta-analysis (Liang et al. 2023)."""
    assert fibrosis_stage(kpa) == mayo
    assert fibrosis_stage(kpa, table="liang2023") == liang


def test_cutoff_tables_are_increasing_and_bad_values_refused():
    for rows in CUTOFFS.values():
        bounds = [b for b, _ in rows]
        assert bounds == sorted(bounds) and np.isinf(bounds[-1])
    with pytest.raises(DataError):
        fibrosis_stage(-1.0)
    with pytest.raises(DataError):
        fibrosis_stage(3.0, table="fibroscan")


@pytest.mark.parametrize("name", ["u.npz", "u.nii.gz", "u.nii"])
def test_displacement_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    u = (rng.standard_normal((2, 7, 5)) + 1j * rng.standard_normal((2, 7, 5))) * 1e-6
    write_displacement(tmp_path / name, u, 1.5e-3, 60.0)
    v, h, f = read_displacement(tmp_path / name)
    np.testing.assert_array_equal(u, v)
    assert h == pytest.approx(1.5e-3) and f == (60.0 if name.endswith("npz") else None)
    np.save(tmp_path / "real.npy", u.real)
    with pytest.raises(DataError):
        read_displacement(tmp_path / "real.npy")


def test_nifti_checks_and_masks(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 1, 1), np.complex64), np.diag([1.0, 2.0, 1.0, 1.0]))
    img.header.set_zooms((1.0, 2.0, 1.0, 1.0))
    nib.save(img, str(tmp_path / "aniso.nii.gz"))
    with pytest.raises(DataError, match="isotropic"):
        read_displacement(tmp_path / "aniso.nii.gz")
    labels = np.zeros((6, 6), np.int16)
    labels[1:3, 1:3], labels[3:5, 3:5] = 1, 2
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(tmp_path / "m.nii.gz"))
    masks = read_masks(tmp_path / "m.nii.gz", (6, 6))
    assert sorted(masks) == ["label1", "label2"] and masks["label2"].sum() == 4
    with pytest.raises(DataError):
        read_masks(tmp_path / "m.nii.gz", (5, 6))
    write_stiffness(tmp_path / "s.nii.gz", np.full((6, 6), 3000 + 400j), 1e-3)
    s = np.asarray(nib.load(str(tmp_path / "s.nii.gz")).dataobj)
    assert s.shape == (6, 6, 1, 3) and s[0, 0, 0, 1] == pytest.approx(3.0)


@pytest.fixture(scope="module")
def small():
    return synthesize(homogeneous_phantom(2500 + 600j, length=0.03), 17, refine=2, noise=0.02, seed=4)


def test_recorded_run_reproduces_bit_identically_and_honours_consent(small):
    stores = open_stores()
    request = MRERequest(small.data, small.h, 60.0, n_bootstrap=2, maxiter=40, open_data="synthetic phantom")
    result, record = run(request, stores, actor="radiologist")
    roi = result.rois[0]
    assert roi.stiffness_ci[0] < roi.stiffness_kpa < roi.stiffness_ci[1]
    assert abs(roi.storage_kpa / 2.5 - 1) < 0.1 and roi.stage == "normal or inflammation"
    report = reproduce_run(stores, record.run_id, actor="radiologist")
    assert report.identical and not report.model_changed
    with pytest.raises(ConsentError):  # a named patient's images used for research without their consent
        run(MRERequest(small.data, small.h, 60.0, n_bootstrap=0, maxiter=5, patient="p1", purpose="research"),
            stores, actor="radiologist")
    # treatment is allowed by the default policy: recorded under the patient's id, data class "imaging"
    _, rec = run(MRERequest(small.data, small.h, 60.0, n_bootstrap=0, maxiter=5, patient="p1",
                            purpose="treatment"), stores, actor="radiologist")
    assert stores.runs.get(rec.run_id).spec.patients == ["p1"]
    with pytest.raises(DataError):
        MRERequest(small.data, small.h, 60.0, purpose="treatment")  # no patient named


def test_cli_phantom_invert_and_reproduce(tmp_path):
    data, out = tmp_path / "u.nii.gz", tmp_path / "out"
    r = runner.invoke(app, ["mre", "phantom", "inclusion", "--pixels", "17", "--fov-mm", "30", "--noise", "0.03",
                            "--out", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["mre", "invert", str(data), "--frequency", "60", "--bootstrap", "2",
                            "--open-data", "synthetic phantom", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rois"][0]["name"] == "field" and summary["status"] in ("discrepancy", "smallest-alpha")
    assert (out / "stiffness.png").stat().st_size > 1000 and (out / "stiffness.nii.gz").exists()
    run_id = r.output.split("run ")[-1].split()[0]
    r = runner.invoke(app, ["reproduce", run_id])
    assert r.exit_code == 0 and "bit-identical" in r.output, r.output
    r = runner.invoke(app, ["mre", "invert", str(data), "--open-data", "x", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "--frequency" in r.output
