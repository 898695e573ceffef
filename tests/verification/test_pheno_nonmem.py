"""NONMEM conformance: phenobarbital in neonates (pharmpy-core's example NONMEM run).

The run (``pheno.mod``) is ADVAN1 TRANS2 with IV boluses into CMT 1::

    TVCL = THETA(1)*WGT
    TVV  = THETA(2)*WGT
    IF(APGR.LT.5) TVV = TVV*(1 + THETA(3))
    CL = TVCL*EXP(ETA(1));  V = TVV*EXP(ETA(2));  S1 = V

We read ``pheno.dta`` with :func:`medtwin.io.nonmem.read_nonmem`, simulate the
library model ``pk1_iv`` with :func:`simulate_dataset` at every data record and
compare with NONMEM's table ``pheno.tab``: PRED (ETA = 0) and CIPREDI (the
subject's ETAs from ``pheno.phi``), final THETAs from ``pheno.ext``.  At a dose
record NONMEM's prediction is taken after the bolus.

Precision.  The table prints 5 significant digits, so a value agrees when
|ours - NONMEM| <= half a unit of the 5th digit.  The estimates themselves are
printed with 6 significant digits (``4.69555E-03``), while NONMEM computed the
table with the unrounded values; at a handful of rows that parameter rounding
moves our value across the table's rounding boundary (by < 2 % of the
half-unit).  We therefore check two things, neither loosened silently:

1. with the printed estimates, every row agrees to 5 significant digits plus
   the first-order effect of the estimates' own rounding, and only a handful
   of rows need that allowance;
2. there exist parameter values within the printed precision of the estimates
   (a linear programme on the sensitivities) for which *every* row agrees to
   5 significant digits with no allowance at all.
"""

from __future__ import annotations

import importlib.resources
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")
scipy_optimize = pytest.importorskip("scipy.optimize")
from scipy import sparse  # noqa: E402

from medtwin.io.access import OpenData  # noqa: E402
from medtwin.io.dataset_simulation import simulate_dataset  # noqa: E402
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.models import get_model  # noqa: E402

FINAL_ITERATION = -1000000000


def _example(name: str) -> Path:
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / name))
    if not path.exists():
        pytest.skip(f"pharmpy does not ship {name} in this version")
    return path


def _nonmem_table(path: Path) -> pd.DataFrame:
    """The last table of a NONMEM output file (lines 'TABLE NO. n' then a header line)."""
    text = path.read_text()
    last = re.split(r"^TABLE NO\..*$", text, flags=re.MULTILINE)[-1]
    return pd.read_csv(io.StringIO(last.strip() + "\n"), sep=r"\s+")


def _half_unit(values, digits: int) -> np.ndarray:
    """Half a unit of the last printed digit of ``values`` printed with ``digits`` significant digits."""
    values = np.abs(np.asarray(values, dtype=float))
    return 0.5 * 10.0 ** (np.floor(np.log10(values)) - (digits - 1))


@pytest.fixture(scope="module")
def run():
    ext = _nonmem_table(_example("pheno.ext"))
    final = ext[ext["ITERATION"] == FINAL_ITERATION]
    assert len(final) == 1, "pheno.ext has no final-estimate row"
    theta = final[["THETA1", "THETA2", "THETA3"]].to_numpy(dtype=float)[0]
    phi = _nonmem_table(_example("pheno.phi"))
    eta = phi[["ETA(1)", "ETA(2)"]].to_numpy(dtype=float)
    etas = {int(i): eta[k] for k, i in enumerate(phi["ID"])}
    table = _nonmem_table(_example("pheno.tab"))
    dataset = read_nonmem(_example("pheno.dta"), access=OpenData("pharmpy's de-identified phenobarbital example"))
    return {"theta": theta, "etas": etas, "table": table, "dataset": dataset, "model": get_model("pk1_iv")}


def _predict(run, theta, etas=None) -> np.ndarray:
    """C at every data record for the given THETAs and (optional) ETAs by ID."""

    def params(subject):
        wgt, apgr = subject.covariates["WGT"], subject.covariates["APGR"]
        eta_cl, eta_v = (0.0, 0.0) if etas is None else etas[subject.id]
        tvv = theta[1] * wgt * ((1.0 + theta[2]) if apgr < 5 else 1.0)
        return {"CL": theta[0] * wgt * np.exp(eta_cl), "V": tvv * np.exp(eta_v)}

    trajectory = simulate_dataset(run["model"], run["dataset"], params, records="all")
    assert trajectory.ok
    assert trajectory.extra["row"].tolist() == list(range(1, len(run["table"]) + 1))
    return trajectory.outputs["C"]


def _sensitivities(run, with_etas: bool):
    """Sensitivity matrix (rows x printed estimates) and the estimates' half-units of printing."""
    theta, etas = run["theta"], run["etas"] if with_etas else None
    columns, half = [], []
    for j in range(3):
        step = 1e-4 * abs(theta[j])
        up, down = theta.copy(), theta.copy()
        up[j] += step
        down[j] -= step
        columns.append(sparse.csr_matrix(((_predict(run, up, etas) - _predict(run, down, etas)) / (2 * step))[:, None]))
        half.append(_half_unit(theta[j], 6))
    if with_etas:
        ids = sorted(etas)
        record_ids = run["table"]["ID"].to_numpy().astype(int)
        position = np.searchsorted(ids, record_ids)
        for k in range(2):
            step = 1e-4
            shift = np.eye(2)[k] * step
            up = {i: etas[i] + shift for i in ids}
            down = {i: etas[i] - shift for i in ids}
            d = (_predict(run, theta, up) - _predict(run, theta, down)) / (2 * step)
            columns.append(sparse.csr_matrix((d, (np.arange(len(d)), position)), shape=(len(d), len(ids))))
            half.extend(_half_unit([etas[i][k] for i in ids], 6))
    return sparse.hstack(columns).tocsr(), np.array(half, dtype=float)


def test_dataset_matches_the_nonmem_records(run):
    dataset, table = run["dataset"], run["table"]
    assert len(dataset) == 59 == len(run["etas"])
    assert len(dataset.frame) == len(table) == 744
    std = dataset.to_frame()
    np.testing.assert_array_equal(std["ID"], table["ID"])
    np.testing.assert_allclose(std["TIME"], table["TIME"], rtol=5e-5)
    assert (std["EVID"] == np.where(std["AMT"] > 0, 1, 0)).all()
    n_doses = sum(len(s.regimen) for s in dataset.subjects)
    n_obs = sum(len(s.obs_times) for s in dataset.subjects)
    assert n_doses + n_obs == 744  # nothing dropped


@pytest.mark.parametrize("column, with_etas", [("PRED", False), ("CIPREDI", True)])
def test_predictions_agree_to_table_precision(run, column, with_etas):
    nonmem = run["table"][column].to_numpy(dtype=float)
    ours = _predict(run, run["theta"], run["etas"] if with_etas else None)
    tolerance = _half_unit(nonmem, 5) * (1 + 1e-9)
    deviation = np.abs(ours - nonmem)
    jac, half = _sensitivities(run, with_etas)
    allowance = np.abs(jac) @ half  # first-order effect of the estimates' 6-digit printing
    beyond = np.flatnonzero(deviation > tolerance)
    print(f"\n{column}: max relative deviation {np.max(deviation / np.abs(nonmem)):.3g}; "
          f"max |dev|/half-unit {np.max(deviation / tolerance):.4f}; rows beyond 5 digits with the printed "
          f"estimates: {[(int(r) + 1, float(nonmem[r]), round(float(ours[r]), 7)) for r in beyond]}")
    assert np.max(deviation / np.abs(nonmem)) < 5.1e-5  # 5 digits: half-unit <= 5e-5 relative
    assert np.all(deviation <= tolerance + allowance), "a deviation is not explained by printing precision"
    assert len(beyond) <= 8, "more than a handful of rows need the estimates' rounding allowance"
    assert np.all(deviation[beyond] <= 1.02 * tolerance[beyond])


@pytest.mark.parametrize("column, with_etas", [("PRED", False), ("CIPREDI", True)])
def test_some_estimates_within_printed_precision_reproduce_every_row(run, column, with_etas):
    """min over estimates within their printed rounding of max_row |ours - NONMEM| / half-unit <= 1."""
    nonmem = run["table"][column].to_numpy(dtype=float)
    ours = _predict(run, run["theta"], run["etas"] if with_etas else None)
    tolerance = _half_unit(nonmem, 5)
    jac, half = _sensitivities(run, with_etas)
    n = jac.shape[1]
    scale = sparse.csr_matrix(tolerance[:, None])
    a_ub = sparse.vstack([sparse.hstack([jac, -scale]), sparse.hstack([-jac, -scale])])
    b_ub = np.concatenate([nonmem - ours, ours - nonmem])
    bounds = [(-h, h) for h in half] + [(0, None)]
    result = scipy_optimize.linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert result.status == 0, result.message
    print(f"\n{column}: best max |dev|/half-unit within the estimates' printed precision: {result.fun:.4f}")
    assert result.fun <= 1 + 1e-9
