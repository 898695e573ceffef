"""MR elastography files: displacement images in (NumPy ``.npz`` or NIfTI), stiffness maps and masks out.

Displacement files hold complex images (m), one per excitation (or motion component):

* ``.npz``: ``u`` complex, shape (n_excitations, *grid) (or ``u_real`` and ``u_imag``), ``h_m`` the pixel
  spacing (m) and optionally ``frequency_hz``;
* NIfTI (``.nii`` / ``.nii.gz``, nibabel): a complex image of shape (*grid, n_excitations) (a 2-D
  acquisition is stored as (nx, ny, 1, n_excitations)); the pixel spacing is the header's voxel size, in mm
  unless the header's spatial unit says otherwise; isotropic in-plane spacing is required.

Stiffness maps are written as NIfTI float32 of shape (*grid, 3): ``|G*|``, ``G'``, ``G''`` in kPa.  Mask
files are integer NIfTI images: each non-zero label is a region named ``label<k>``.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> u = (np.arange(2 * 6 * 5) * (1 + 1j)).reshape(2, 6, 5) * 1e-7
>>> path = os.path.join(tempfile.mkdtemp(), "u.nii.gz")
>>> write_displacement(path, u, 1.25e-3)
>>> v, h, f = read_displacement(path)
>>> bool(np.array_equal(u, v)), h, f
(True, 0.00125, None)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medtwin.errors import DataError

__all__ = ["read_displacement", "read_masks", "write_displacement", "write_stiffness", "write_summary"]

_MM = {"mm": 1e-3, "meter": 1.0, "micron": 1e-6, "unknown": 1e-3}


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(".nii") or path.name.endswith(".nii.gz")


def read_displacement(path) -> tuple[np.ndarray, float, float | None]:
    """``(u, h, frequency)``: complex images (n_excitations, *grid) (m), spacing h (m), frequency (Hz) or None.

    Raises
    ------
    DataError
        Unreadable file, real-valued or non-finite data, anisotropic or non-positive spacing.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such displacement file")
    frequency = None
    if _is_nifti(path):
        import nibabel as nib

        try:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
        except Exception as exc:  # nibabel raises many types for a bad file
            raise DataError(f"{path}: not a readable NIfTI image ({exc})") from None
        zooms = img.header.get_zooms()
        unit = img.header.get_xyzt_units()[0] or "unknown"
        if data.ndim == 4 and data.shape[2] == 1:
            data, zooms = data[:, :, 0, :], zooms[:2]
        elif data.ndim == 4:
            zooms = zooms[:3]
        else:
            raise DataError(f"{path}: NIfTI displacement must be 4-D (*grid, n_excitations), got {data.shape}")
        spacing = np.asarray(zooms, dtype=float) * _MM.get(unit, 1e-3)
        u = np.moveaxis(data, -1, 0)
    elif path.suffix == ".npz":
        try:
            with np.load(path) as z:
                u = z["u"] if "u" in z else z["u_real"] + 1j * z["u_imag"]
                spacing = np.atleast_1d(np.asarray(z["h_m"], dtype=float))
                frequency = float(z["frequency_hz"]) if "frequency_hz" in z else None
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"{path}: an .npz displacement file needs u (or u_real, u_imag) and h_m ({exc})") from None
    else:
        raise DataError(f"{path}: displacement files are .npz or NIfTI (.nii, .nii.gz)")
    if not np.iscomplexobj(u):
        raise DataError(f"{path}: displacement images must be complex (amplitude and phase of the harmonic motion)")
    u = np.asarray(u, dtype=complex)
    if u.ndim not in (3, 4) or not np.all(np.isfinite(u)):
        raise DataError(f"{path}: displacement must be finite with shape (n_excitations, *grid), got {u.shape}")
    if spacing.size > 1 and not np.allclose(spacing, spacing[0], rtol=1e-6):
        raise DataError(f"{path}: the pixel spacing must be isotropic, got {spacing.tolist()} m")
    h = float(spacing[0])
    if not h > 0:
        raise DataError(f"{path}: pixel spacing must be positive, got {h} m")
    return u, h, frequency


def write_displacement(path, u, h: float, frequency: float | None = None) -> None:
    """Write complex displacement images (n_excitations, *grid) (m) with spacing ``h`` (m)."""
    path = Path(path)
    u = np.asarray(u)
    if _is_nifti(path):
        import nibabel as nib

        arr = np.moveaxis(u, 0, -1)
        if u.ndim == 3:
            arr = arr[:, :, None, :]
        img = nib.Nifti1Image(arr.astype(np.complex128), np.diag([h * 1e3] * 3 + [1.0]))
        img.header.set_zooms((h * 1e3,) * 3 + (1.0,))
        img.header.set_xyzt_units("mm")
        nib.save(img, str(path))
    elif path.suffix == ".npz":
        extra = {} if frequency is None else {"frequency_hz": float(frequency)}
        np.savez_compressed(path, u=u, h_m=float(h), **extra)
    else:
        raise DataError(f"{path}: displacement files are .npz or NIfTI (.nii, .nii.gz)")


def write_stiffness(path, modulus, h: float) -> None:
    """Write ``|G*|``, ``G'``, ``G''`` (kPa) of a complex modulus map (Pa) as a NIfTI float32 (*grid, 3)."""
    import nibabel as nib

    g = np.asarray(modulus)
    arr = np.stack([np.abs(g), g.real, g.imag], axis=-1) / 1e3
    if g.ndim == 2:
        arr = arr[:, :, None, :]
    img = nib.Nifti1Image(arr.astype(np.float32), np.diag([h * 1e3] * 3 + [1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, str(Path(path)))


def read_masks(path, shape) -> dict:
    """Regions of an integer label NIfTI (each non-zero label ``k`` -> ``"label<k>"``), checked against the
    image grid ``shape``."""
    import nibabel as nib

    try:
        labels = np.asarray(nib.load(str(path)).dataobj)
    except Exception as exc:
        raise DataError(f"{path}: not a readable NIfTI mask ({exc})") from None
    if labels.ndim == 3 and len(shape) == 2 and labels.shape[2] == 1:
        labels = labels[:, :, 0]
    if labels.shape != tuple(shape):
        raise DataError(f"{path}: mask shape {labels.shape} differs from the image grid {tuple(shape)}")
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise DataError(f"{path}: the mask has no non-zero label")
    return {f"label{v}": labels == v for v in values}


def write_summary(path, elastogram, extra: dict | None = None) -> None:
    """The ROI summaries, the inversion's weight/misfit/status and ``extra`` as JSON."""
    inv = elastogram.inversion
    doc = {"rois": [r.as_dict() for r in elastogram.rois], "regularisation": inv.regularisation,
           "alpha": inv.alpha, "chi2": inv.chi2, "noise_sigma_m": inv.noise_sigma, "status": inv.status,
           "alpha_path": [list(p) for p in inv.path], "settings": elastogram.settings, **dict(extra or {})}
    Path(path).write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
