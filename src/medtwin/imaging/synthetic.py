"""Synthetic MRE acquisitions: a phantom's displacement images, computed on a finer mesh, with noise.

The inverse crime is avoided: the data come from P2 elements on a mesh ``refine`` times finer than the
pixel grid (with absorbing boundaries and a driver), the inversion uses P1 on the pixel grid with the
measured border as Dirichlet data, and Gaussian noise is added to every pixel.

Noise level ``p``: independent Gaussian noise of standard deviation ``p * rms(|u|)`` on the real and on the
imaginary part of every pixel of every image (``rms`` over the image).

Examples
--------
>>> from medtwin.imaging.phantoms import homogeneous_phantom
>>> acq = synthesize(homogeneous_phantom(), 17, frequency=60.0, refine=1, noise=0.01, seed=1)
>>> acq.data.shape, acq.h
((2, 17, 17), 0.00625)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.errors import DataError
from medtwin.imaging.forward import sample, solve_scalar, unit_mesh
from medtwin.imaging.phantoms import Phantom

__all__ = ["Acquisition", "add_noise", "grid_points", "synthesize"]


@dataclass(frozen=True)
class Acquisition:
    """Displacement images ``data`` (n_excitations, *grid), complex (m), noise-free ``clean``, pixel spacing
    ``h`` (m), frequency (Hz), density (kg/m^3), the true G* at the pixels ``truth`` (Pa), ROI masks."""

    data: np.ndarray
    clean: np.ndarray
    h: float
    frequency: float
    rho: float
    truth: np.ndarray
    masks: dict
    noise: float
    seed: int | None

    @property
    def omega(self) -> float:
        return 2.0 * np.pi * self.frequency


def grid_points(shape, h: float) -> np.ndarray:
    """Pixel-centre coordinates (dim, *shape) (m), node (0, ..., 0) at the origin."""
    return np.stack(np.meshgrid(*[np.arange(s) * h for s in shape], indexing="ij"))


def add_noise(u, level: float, seed: int | None) -> np.ndarray:
    """``u`` plus Gaussian noise of std ``level * rms(|u_k|)`` on each real and imaginary part of image k."""
    if level < 0:
        raise DataError(f"noise level must be >= 0, got {level}")
    u = np.asarray(u)
    rng = np.random.default_rng(seed)
    out = np.empty_like(u)
    for k, img in enumerate(u):
        s = level * float(np.sqrt(np.mean(np.abs(img) ** 2)))
        out[k] = img + s * (rng.standard_normal(img.shape) + 1j * rng.standard_normal(img.shape))
    return out


def _drivers(dim, length):
    """(Dirichlet data, driven-face test) of each excitation: a smooth drive on the face x_j = 0."""
    out = []
    for axis in range(min(dim, 2)):
        other = 1 - axis

        def data(x, axis=axis, other=other):
            return 1e-6 * (1.0 + 0.3 * np.cos(np.pi * x[other] / length)) * np.ones_like(x[axis])

        def driven(x, axis=axis):
            return np.isclose(x[axis], 0.0)

        out.append((data, driven))
    return out


def synthesize(phantom: Phantom, n: int, *, frequency: float = 60.0, refine: int = 2, noise: float = 0.0,
               seed: int | None = 0, order: int = 2) -> Acquisition:
    """Displacement images of ``phantom`` on an ``n``-pixel-a-side grid covering its box.

    Parameters
    ----------
    phantom : Phantom
    n : int
        Pixels a side (the grid spacing is ``length / (n - 1)``).
    frequency : float
        Hz.
    refine : int
        The data mesh has ``refine * (n - 1)`` cells a side (P2 by default): finer than the inversion grid.
    noise : float
        Relative noise level (0.03 = 3 %), see the module docstring.
    seed : int, optional
        Noise stream.
    """
    if n < 5 or refine < 1 or frequency <= 0:
        raise DataError(f"synthesize needs n >= 5, refine >= 1 and frequency > 0 Hz; got {n}, {refine}, {frequency}")
    omega = 2.0 * np.pi * frequency
    h = phantom.length / (n - 1)
    mesh = unit_mesh(phantom.dim, refine * (n - 1), length=phantom.length)
    pts = grid_points((n,) * phantom.dim, h)
    flat = pts.reshape(phantom.dim, -1)
    clean = []
    for data, driven in _drivers(phantom.dim, phantom.length):
        sol = solve_scalar(mesh, phantom.modulus, phantom.rho, omega, dirichlet=data, order=order,
                           driven=driven, absorbing=True)
        clean.append(sample(sol, flat).reshape((n,) * phantom.dim))
    clean = np.stack(clean)
    return Acquisition(add_noise(clean, noise, seed) if noise > 0 else clean.copy(), clean, h, frequency,
                       phantom.rho, phantom.modulus(pts), phantom.masks(pts), noise, seed)
