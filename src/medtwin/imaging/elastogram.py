"""From displacement images to a stiffness map with uncertainty, ROI summaries and a fibrosis stage.

:func:`analyse` runs the regularised inversion (:func:`~medtwin.imaging.inversion.invert`) and, side by
side, the algebraic Helmholtz inversion; the uncertainty is a parametric bootstrap over noise: the fitted
model's prediction plus fresh Gaussian noise of the estimated level, inverted again at the chosen weight
(warm start), ``n_bootstrap`` times.  ROI means are reported in kPa with a normal-approximation 95 %
interval from the bootstrap spread.  The stage comes from published MRE liver-stiffness cut-offs on
``|G*|`` (the magnitude of the complex shear modulus, what clinical MRE reports as liver stiffness).

Cut-off tables (kPa, 60 Hz MRE):

* ``"mayo"``: < 2.5 normal; 2.5-2.9 normal or inflammation; 2.9-3.5 F1-F2; 3.5-4.0 F2-F3; 4.0-5.0 F3-F4;
  > 5.0 F4.  Venkatesh SK, Ehman RL. Magnetic resonance elastography of liver. Magn Reson Imaging Clin N Am
  2014;22:433-446 (the Mayo Clinic thresholds); the 2.93 kPa threshold for any fibrosis is that of Yin M,
  Talwalkar JA, Glaser KJ et al. Clin Gastroenterol Hepatol 2007;5:1207-1213.
* ``"liang2023"``: >= F2 3.14, >= F3 3.53, F4 4.45 kPa (NAFLD; individual-patient-data meta-analysis of 8
  cohorts, 798 patients): Liang J-X, Ampuero J, Niu H et al. (LITMUS). J Hepatol 2023;79:592-604.

Examples
--------
>>> fibrosis_stage(2.2), fibrosis_stage(3.7), fibrosis_stage(3.7, table="liang2023")
('normal', 'F2-F3', '>=F3')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medtwin.errors import DataError
from medtwin.imaging.helmholtz import helmholtz_inversion
from medtwin.imaging.inversion import InversionResult, invert, predict

__all__ = ["CUTOFFS", "Elastogram", "RoiSummary", "analyse", "bootstrap", "default_masks", "fibrosis_stage"]

#: (upper bound kPa, label) rows of each table; the last row has no upper bound.
CUTOFFS = {
    "mayo": ((2.5, "normal"), (2.9, "normal or inflammation"), (3.5, "F1-F2"), (4.0, "F2-F3"), (5.0, "F3-F4"),
             (np.inf, "F4")),
    "liang2023": ((3.14, "<F2"), (3.53, ">=F2"), (4.45, ">=F3"), (np.inf, "F4")),
}


def fibrosis_stage(stiffness_kpa: float, *, table: str = "mayo") -> str:
    """The fibrosis stage of a liver stiffness ``|G*|`` (kPa) by a published cut-off table."""
    if table not in CUTOFFS:
        raise DataError(f"unknown cut-off table {table!r}; known: {sorted(CUTOFFS)}")
    value = float(stiffness_kpa)
    if not np.isfinite(value) or value <= 0:
        raise DataError(f"liver stiffness must be a positive number of kPa, got {stiffness_kpa!r}")
    for upper, label in CUTOFFS[table]:
        if value < upper:
            return label
    return CUTOFFS[table][-1][1]


@dataclass(frozen=True)
class RoiSummary:
    """Mean storage modulus G' and stiffness |G*| of one region (kPa) with 95 % intervals (bootstrap)."""

    name: str
    n_pixels: int
    storage_kpa: float
    storage_ci: tuple
    stiffness_kpa: float
    stiffness_ci: tuple
    helmholtz_stiffness_kpa: float
    stage: str
    stage_range: tuple

    def as_dict(self) -> dict:
        return {"name": self.name, "n_pixels": self.n_pixels, "storage_kpa": self.storage_kpa,
                "storage_ci": list(self.storage_ci), "stiffness_kpa": self.stiffness_kpa,
                "stiffness_ci": list(self.stiffness_ci), "helmholtz_stiffness_kpa": self.helmholtz_stiffness_kpa,
                "stage": self.stage, "stage_range": list(self.stage_range)}


@dataclass(frozen=True)
class Elastogram:
    """Result of :func:`analyse`: maps (Pa, grid shape), the inversion, ROI summaries and settings."""

    modulus: np.ndarray
    helmholtz: np.ndarray
    stiffness_sd: np.ndarray
    inversion: InversionResult
    rois: tuple
    settings: dict = field(default_factory=dict)
    patient: str | None = None

    @property
    def status(self) -> str:
        return self.inversion.status

    def provenance_content(self) -> dict:
        """What a run record digests (see :func:`medtwin.governance.provenance.result_view`)."""
        outputs = {"storage_modulus_pa": self.modulus.real, "loss_modulus_pa": self.modulus.imag,
                   "helmholtz_storage_pa": self.helmholtz.real, "helmholtz_loss_pa": self.helmholtz.imag,
                   "stiffness_sd_pa": self.stiffness_sd}
        content = {"rois": [r.as_dict() for r in self.rois], "alpha": self.inversion.alpha,
                   "chi2": self.inversion.chi2, "noise_sigma": self.inversion.noise_sigma,
                   "status": self.inversion.status, "path": [list(p) for p in self.inversion.path],
                   **{k: v.tolist() for k, v in outputs.items()}}
        return {"content": content, "outputs": outputs,
                "solver": {"regularisation": self.inversion.regularisation, **self.settings}}


def default_masks(shape, margin: int = 4) -> dict:
    """One ROI, ``"field"``: the image without a ``margin``-pixel border (where the Dirichlet data sit)."""
    m = np.zeros(shape, dtype=bool)
    m[(slice(margin, -margin),) * len(shape)] = True
    return {"field": m}


def bootstrap(data, fit: InversionResult, h: float, rho: float, omega: float, *, n: int = 8,
              seed: int = 0, maxiter: int = 60) -> np.ndarray:
    """Parametric bootstrap of G* (Pa): ``n`` maps (n, *grid) from the fitted prediction plus fresh noise
    (per-component std ``fit.noise_sigma``), each inverted at ``fit.alpha`` from ``fit.modulus``."""
    data = np.asarray(data)
    clean = predict(fit.modulus, data, h, rho, omega)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        noise = fit.noise_sigma * (rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))
        res = invert(clean + noise, h, rho, omega, regularisation=fit.regularisation, alpha=fit.alpha,
                     noise_sigma=fit.noise_sigma, initial=fit.modulus, maxiter=maxiter, model_error=0.0)
        out.append(res.modulus)
    return np.stack(out) if out else np.empty((0,) + data.shape[1:], dtype=complex)


def _summary(name, mask, g, samples, g_ahi, table):
    z = 1.959963984540054
    mean_s = float(np.mean(g.real[mask])) / 1e3
    mean_a = float(np.mean(np.abs(g[mask]))) / 1e3
    if samples.shape[0] >= 2:
        sd_s = float(np.std([s.real[mask].mean() for s in samples], ddof=1)) / 1e3
        sd_a = float(np.std([np.abs(s[mask]).mean() for s in samples], ddof=1)) / 1e3
    else:
        sd_s = sd_a = float("nan")
    ci_a = (mean_a - z * sd_a, mean_a + z * sd_a)
    stage_range = tuple(fibrosis_stage(v, table=table) if np.isfinite(v) and v > 0 else "unknown" for v in ci_a)
    return RoiSummary(name, int(mask.sum()), mean_s, (mean_s - z * sd_s, mean_s + z * sd_s), mean_a, ci_a,
                      float(np.mean(np.abs(g_ahi[mask]))) / 1e3, fibrosis_stage(mean_a, table=table), stage_range)


def analyse(data, h: float, frequency: float, *, rho: float = 1000.0, regularisation: str = "tv",
            masks=None, n_bootstrap: int = 8, seed: int = 0, table: str = "mayo", sigma_px: float = 1.5,
            maxiter: int = 150) -> Elastogram:
    """Stiffness maps, ROI summaries and stage from displacement images ``data`` (n_exc, *grid) (m).

    Parameters
    ----------
    data : ndarray, complex
        Displacement images (m), one per excitation.
    h : float
        Pixel spacing (m).
    frequency : float
        Vibration frequency (Hz).
    rho : float
        Tissue density (kg/m^3).
    regularisation : {"tv", "tikhonov"}
    masks : mapping name -> bool array (grid), optional
        ROIs; default :func:`default_masks`.
    n_bootstrap : int
        Bootstrap replicates for the intervals (0: none, the intervals are NaN).
    seed : int
        Bootstrap noise stream.
    table : str
        Cut-off table of :data:`CUTOFFS`.
    sigma_px : float
        Filter width of the side-by-side Helmholtz inversion (pixels).
    """
    data = np.asarray(data)
    if frequency <= 0:
        raise DataError(f"frequency must be positive (Hz), got {frequency}")
    omega = 2.0 * np.pi * frequency
    fit = invert(data, h, rho, omega, regularisation=regularisation, maxiter=maxiter)
    ahi = helmholtz_inversion(data, h, rho, omega, sigma_px=sigma_px)
    samples = bootstrap(data, fit, h, rho, omega, n=n_bootstrap, seed=seed) if n_bootstrap else np.empty(
        (0,) + data.shape[1:], dtype=complex)
    sd = np.std(np.abs(samples), axis=0, ddof=1) if samples.shape[0] >= 2 else np.full(data.shape[1:], np.nan)
    masks = default_masks(data.shape[1:]) if masks is None else dict(masks)
    for name, m in masks.items():
        if np.shape(m) != data.shape[1:] or not np.any(m):
            raise DataError(f"ROI {name!r} must be a non-empty boolean mask of shape {data.shape[1:]}")
    rois = tuple(_summary(name, np.asarray(m, bool), fit.modulus, samples, ahi, table) for name, m in masks.items())
    settings = {"h_m": float(h), "frequency_hz": float(frequency), "rho": float(rho), "n_bootstrap": int(n_bootstrap),
                "seed": int(seed), "table": table, "sigma_px": float(sigma_px), "maxiter": int(maxiter)}
    return Elastogram(fit.modulus, ahi, sd, fit, rois, settings)

