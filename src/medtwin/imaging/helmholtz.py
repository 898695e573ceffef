"""Algebraic Helmholtz inversion (AHI), the clinical baseline: ``G* = -rho omega^2 u / lap(u)``, pixel by pixel.

Local homogeneity is assumed (grad G* . grad u dropped).  The Laplacian is the 5-point (7-point in 3-D)
finite difference on the pixel grid; before it, each displacement image (real and imaginary parts) is
smoothed by a Gaussian filter of ``sigma_px`` pixels (``sigma_px = 0``: no filtering).  Several
excitations (or components) are combined by least squares per pixel:
``G* = -rho omega^2 sum_k conj(lap u_k) u_k / sum_k |lap u_k|^2``.  Without noise it is accurate where the
field is smooth; noise is amplified by the second derivative (the error grows like noise / (k h)^2), which
the filter trades for bias (blurred edges, lowered wavenumber).  Reference: Papazoglou S, Hamhaber U,
Braun J, Sack I. Phys Med Biol 2008;53:3147-3158 (algebraic Helmholtz inversion in MRE).

Examples
--------
>>> import numpy as np
>>> from medtwin.imaging.forward import plane_wave
>>> h, n = 1e-3, 48
>>> x = np.stack(np.meshgrid(np.arange(n) * h, np.arange(n) * h, indexing="ij"))
>>> u = plane_wave(2000 + 400j, 1000.0, 2 * np.pi * 60, (1.0, 0.3))(x)
>>> g = helmholtz_inversion(u[None], h, 1000.0, 2 * np.pi * 60, sigma_px=0)
>>> bool(abs(np.median(g[2:-2, 2:-2]) / (2000 + 400j) - 1) < 0.01)
True
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medtwin.errors import DataError

__all__ = ["helmholtz_inversion", "laplacian"]


def laplacian(u, h: float) -> np.ndarray:
    """Second-order finite-difference Laplacian of a complex image (…, grid) with spacing ``h`` (m), 1/m^2;
    edge pixels use nearest-value padding (they are unreliable and masked by callers)."""
    u = np.asarray(u)
    dims = u.ndim
    out = np.zeros_like(u)
    for ax in range(dims):
        padded = np.concatenate([np.take(u, [0], axis=ax), u, np.take(u, [-1], axis=ax)], axis=ax)
        n = u.shape[ax]
        out = out + (np.take(padded, range(2, n + 2), axis=ax) - 2 * u
                     + np.take(padded, range(0, n), axis=ax))
    return out / h ** 2


def helmholtz_inversion(u, h: float, rho: float, omega: float, *, sigma_px: float = 1.5) -> np.ndarray:
    """Pixel-wise complex shear modulus G* (Pa) from displacement images.

    Parameters
    ----------
    u : ndarray, complex, shape (n_excitations, *grid)
        Displacement images (m), one per excitation (or component).
    h : float
        Pixel spacing (m).
    rho, omega : float
        Density (kg/m^3), angular frequency (rad/s).
    sigma_px : float
        Gaussian filter width (pixels) applied to each image before the Laplacian; 0 for none.

    Returns
    -------
    ndarray, complex, shape grid
    """
    u = np.asarray(u)
    if u.ndim not in (3, 4) or not np.iscomplexobj(u):
        raise DataError(f"displacement images must be complex with shape (n_excitations, *grid), got "
                        f"{u.dtype} {u.shape}")
    if not (h > 0 and rho > 0 and omega > 0):
        raise DataError("pixel spacing (m), density (kg/m^3) and angular frequency (rad/s) must be positive")
    if sigma_px < 0:
        raise DataError(f"filter width must be >= 0 pixels, got {sigma_px}")
    if sigma_px > 0:
        u = np.stack([ndimage.gaussian_filter(c.real, sigma_px, mode="nearest")
                      + 1j * ndimage.gaussian_filter(c.imag, sigma_px, mode="nearest") for c in u])
    lap = np.stack([laplacian(c, h) for c in u])
    num = np.sum(np.conj(lap) * u, axis=0)
    den = np.sum(np.abs(lap) ** 2, axis=0)
    tiny = np.finfo(float).tiny
    return -rho * omega ** 2 * num / np.maximum(den, tiny)
