"""Regularised finite-element inversion of the complex shear modulus G*(x) from MRE displacement images.

Output least squares on the pixel grid (:class:`~medtwin.imaging.grid.GridOperator`, P1): the measured
displacement on the image border is the Dirichlet data (no knowledge of the driver is needed), the
interior is predicted by ``A(G*) u = 0`` and compared with the measured interior,

``F(a, b) = chi2(a, b) / 2 + alpha (R(a) + R(b))``,  ``G' = exp(a)``, ``G'' = exp(b)`` (nodal, Pa),

``chi2 = sum |u(G*) - d|^2 / (n sigma^2)`` over the ``n`` real data (per-component noise ``sigma``, m).
``R`` is total variation ``L/|Omega| int sqrt(|grad a|^2 + eps^2)`` (edges kept) or Tikhonov
``L^2/|Omega| int |grad a|^2 / 2`` (smooth), both on log-moduli (scale-free).  The gradient is adjoint:
one extra solve with the same LU factors (A is complex symmetric), ``dF/dG*_e = -|e| grad(lambda).grad(u)``.
L-BFGS-B minimises F for a decreasing sequence of ``alpha`` (warm starts); the discrepancy principle
(Morozov) keeps the largest ``alpha`` whose ``chi2 <= tau``, with ``sigma`` from the data
(:func:`estimate_noise`) unless given.

Examples
--------
>>> import numpy as np
>>> estimate_noise(np.zeros((1, 8, 8), complex))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
from scipy import optimize
from scipy.signal import convolve2d

from medtwin.errors import DataError
from medtwin.imaging.grid import GridOperator
from medtwin.imaging.helmholtz import helmholtz_inversion

__all__ = ["InversionResult", "REGULARISATIONS", "estimate_noise", "invert", "operator_error", "predict"]

REGULARISATIONS = ("tv", "tikhonov")
_BOUNDS = (np.log(50.0), np.log(1e6))   # Pa: G' and G'' kept within [50 Pa, 1 MPa]


@dataclass(frozen=True)
class InversionResult:
    """A regularised inversion.

    Attributes
    ----------
    modulus : ndarray, complex, grid shape
        G* (Pa) at the pixels.
    alpha : float
        The regularisation weight kept.
    chi2 : float
        Misfit per real datum (about 1 at the noise level).
    noise_sigma : float
        Per-component noise standard deviation used (m).
    regularisation : str
    status : str
        ``"discrepancy"`` (chi2 <= tau reached), ``"smallest-alpha"`` (never reached: the last alpha is kept;
        model error or underestimated noise), ``"fixed-alpha"`` (alpha given), ``"failed"`` (a singular
        operator stopped the search: the last completed estimate is returned).
    path : tuple of (alpha, chi2, iterations)
    iterations : int
        L-BFGS iterations, all alphas together.
    """

    modulus: np.ndarray
    alpha: float
    chi2: float
    noise_sigma: float
    regularisation: str
    status: str
    path: tuple
    iterations: int


def estimate_noise(u) -> float:
    """Per-component Gaussian noise standard deviation of displacement images (same unit as ``u``).

    Immerkaer's estimator (Immerkaer J. Fast noise variance estimation. Comput Vis Image Underst
    1996;64:300-302): the mean absolute response to the mask ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (which
    annihilates planes and is ~ (kh)^4 on a resolved wave) times ``sqrt(pi/2) / 6``; real and imaginary
    parts of every image (2-D slices of 3-D volumes) pooled.
    """
    u = np.asarray(u)
    mask = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    slices = u.reshape((-1,) + u.shape[-2:]) if u.ndim >= 3 else u[None]
    total, count = 0.0, 0
    for s in slices:
        for part in (s.real, s.imag):
            r = convolve2d(part, mask, mode="valid")
            total += np.abs(r).sum()
            count += r.size
    return float(np.sqrt(np.pi / 2.0) / 6.0 * total / count) if count else 0.0


class _Problem:
    """Value and adjoint gradient of the misfit on one grid."""

    def __init__(self, op: GridOperator, data, rho, omega, sigma, regularisation, eps):
        self.op, self.rho, self.omega = op, rho, omega
        flat = data.reshape(data.shape[0], -1).T               # (n_nodes, n_exc)
        self.dI, self.dD = flat[op.interior], flat[op.boundary]
        self.n_real = 2 * self.dI.size
        self.sigma2 = max(sigma, 1e-300) ** 2
        self.reg, self.eps = regularisation, eps
        self.length = op.h * (max(op.shape) - 1)
        self.volume = float(op.area.sum())

    def solve(self, g):
        A = self.op.operator(g, self.rho, self.omega).tocsr()
        I, D = self.op.interior, self.op.boundary
        lu = spla.splu(A[I][:, I].tocsc())
        return lu, lu.solve(-(A[I][:, D] @ self.dD))

    def full(self, interior_values, boundary_values):
        out = np.zeros((self.op.n_nodes, interior_values.shape[1]), dtype=complex)
        out[self.op.interior], out[self.op.boundary] = interior_values, boundary_values
        return out

    def misfit(self, theta):
        """(chi2 / 2, d chi2/2 / d theta, chi2)."""
        n = self.op.n_nodes
        a, b = theta[:n], theta[n:]
        g = np.exp(a) + 1j * np.exp(b)
        lu, uI = self.solve(g)
        r = uI - self.dI
        scale = 1.0 / (self.sigma2 * self.n_real)
        value = 0.5 * scale * float(np.sum(np.abs(r) ** 2))
        lam = lu.solve(np.conj(r) * scale)
        U = self.full(uI, self.dD)
        Lm = self.full(lam, np.zeros_like(self.dD))
        gu, gl = self.op.element_gradient(U), self.op.element_gradient(Lm)
        ge = -self.op.area * np.einsum("edk,edk->e", gl, gu)
        grad = np.concatenate([self.op.scatter(ge.real) * np.exp(a), self.op.scatter(-ge.imag) * np.exp(b)])
        return value, grad, 2.0 * value

    def penalty(self, field):
        """(R, dR/dfield) of one nodal log-modulus field."""
        ga = self.op.element_gradient(field)                  # (ne, dim)
        if self.reg == "tv":
            mag = np.sqrt(np.sum(ga ** 2, axis=1) + self.eps ** 2)
            c = self.length / self.volume
            return c * float(np.sum(self.op.area * mag)), c * self.op.element_to_nodes(
                (self.op.area / mag)[:, None] * ga)
        c = self.length ** 2 / self.volume
        return 0.5 * c * float(np.sum(self.op.area * np.sum(ga ** 2, axis=1))), c * self.op.element_to_nodes(
            self.op.area[:, None] * ga)

    def objective(self, theta, alpha):
        value, grad, _ = self.misfit(theta)
        n = self.op.n_nodes
        for part in (slice(0, n), slice(n, 2 * n)):
            r, dr = self.penalty(theta[part])
            value += alpha * r
            grad[part] += alpha * dr
        return value, grad


def _initial(data, h, rho, omega):
    """A homogeneous start: the median of the filtered Helmholtz estimate (G'' at least 5 % of G')."""
    g = helmholtz_inversion(data, h, rho, omega, sigma_px=2.0)
    inner = g[(slice(2, -2),) * (g.ndim)]
    gr = float(np.median(inner.real))
    gr = gr if np.isfinite(gr) and gr > 100.0 else 2000.0
    gi = float(np.median(inner.imag))
    gi = gi if np.isfinite(gi) and gi > 0.05 * gr else 0.05 * gr
    return gr, gi


def operator_error(shape, h: float, rho: float, omega: float, g0: complex) -> float:
    """Relative rms error of the grid operator on a plane wave of the homogeneous medium ``g0`` (Pa)
    crossing the grid along an axis and along the diagonal (the larger): the operator error of the
    generalised discrepancy principle (Goncharsky AV, Leonov AS, Yagola AG. USSR Comput Math Math Phys
    1973;13:25-37), ``sigma_eff^2 = sigma^2 + (model_error * rms|d|)^2``."""
    from medtwin.imaging.forward import plane_wave
    from medtwin.imaging.synthetic import grid_points

    pts = grid_points(shape, h)
    worst = 0.0
    for direction in ([1.0] + [0.0] * (len(shape) - 1), [1.0] * len(shape)):
        exact = plane_wave(g0, rho, omega, direction)(pts)
        u = predict(np.full(shape, g0), exact[None], h, rho, omega)[0]
        worst = max(worst, float(np.sqrt(np.mean(np.abs(u - exact) ** 2) / np.mean(np.abs(exact) ** 2))))
    return worst


def predict(modulus, boundary_data, h: float, rho: float, omega: float) -> np.ndarray:
    """The displacement images the inversion's model predicts for ``modulus`` (Pa, grid) with the border of
    ``boundary_data`` (n_exc, *grid) as Dirichlet data (m)."""
    boundary_data = np.asarray(boundary_data)
    op = GridOperator(boundary_data.shape[1:], h)
    prob = _Problem(op, boundary_data, rho, omega, 1.0, "tv", 1.0)
    _, uI = prob.solve(np.asarray(modulus).ravel())
    U = prob.full(uI, prob.dD)
    return U.T.reshape(boundary_data.shape)


def invert(data, h: float, rho: float, omega: float, *, regularisation: str = "tv", alpha: float | None = None,
           noise_sigma: float | None = None, tau: float = 1.0, alphas=None, initial=None,
           maxiter: int = 150, eps_px: float = 0.02, model_error: float | None = None) -> InversionResult:
    """Regularised FEM inversion of G* from displacement images.

    Parameters
    ----------
    data : ndarray, complex, shape (n_excitations, *grid)
        Displacement images (m) on a 2-D or 3-D pixel grid (node = pixel centre).
    h : float
        Pixel spacing (m).
    rho, omega : float
        Density (kg/m^3), angular frequency (rad/s).
    regularisation : {"tv", "tikhonov"}
    alpha : float, optional
        A fixed weight (no discrepancy search).
    noise_sigma : float, optional
        Per-component noise std (m); default :func:`estimate_noise`.
    tau : float
        Discrepancy target for chi2 (per real datum).
    alphas : sequence of float, optional
        Decreasing weights tried (default ``10**[0, -0.5, ..., -4]``).
    initial : complex or ndarray, optional
        Starting G* (Pa); default the median of the filtered Helmholtz estimate.
    maxiter : int
        L-BFGS iterations per alpha.
    eps_px : float
        TV smoothing: ``eps = eps_px / h`` (a 2 %-per-pixel change of log G).
    model_error : float, optional
        Relative rms error of the grid operator (default :func:`model_error` at the starting modulus), added
        to the noise in the discrepancy target; 0 for the plain discrepancy principle.

    Returns
    -------
    InversionResult
    """
    data = np.asarray(data)
    if data.ndim not in (3, 4) or not np.iscomplexobj(data) or not np.all(np.isfinite(data)):
        raise DataError(f"displacement images must be finite complex, shape (n_excitations, *grid); got "
                        f"{data.dtype} {data.shape}")
    if regularisation not in REGULARISATIONS:
        raise DataError(f"regularisation must be one of {REGULARISATIONS}, not {regularisation!r}")
    if not (h > 0 and rho > 0 and omega > 0 and tau > 0):
        raise DataError("pixel spacing (m), density (kg/m^3), angular frequency (rad/s) and tau must be positive")
    op = GridOperator(data.shape[1:], h)
    sigma = estimate_noise(data) if noise_sigma is None else float(noise_sigma)
    gr, gi = _initial(data, h, rho, omega)
    rms = float(np.sqrt(np.mean(np.abs(data) ** 2)))
    if model_error is None:
        model_error = operator_error(data.shape[1:], h, rho, omega, complex(gr, gi))
    sigma = float(np.hypot(max(sigma, 1e-6 * rms), model_error * rms / np.sqrt(2.0)))
    prob = _Problem(op, data, rho, omega, sigma, regularisation, eps_px / h)
    if initial is None:
        theta = np.concatenate([np.full(op.n_nodes, np.log(gr)), np.full(op.n_nodes, np.log(gi))])
    else:
        g0 = np.broadcast_to(np.asarray(initial, dtype=complex), data.shape[1:]).ravel()
        theta = np.concatenate([np.log(np.maximum(g0.real, 60.0)), np.log(np.maximum(g0.imag, 60.0))])
    bounds = [_BOUNDS] * theta.size
    path, total = [], 0
    chosen = None
    seq = [alpha] if alpha is not None else list(alphas if alphas is not None else 10.0 ** np.arange(0, -4.01, -0.5))
    failed = False
    for a_k in seq:
        try:
            res = optimize.minimize(prob.objective, theta, args=(a_k,), jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"maxiter": maxiter, "ftol": 1e-10, "gtol": 1e-8})
        except RuntimeError:  # SuperLU: an exactly singular operator (a resonance of the trial modulus)
            failed = True
            break
        theta, total = res.x, total + int(res.nit)
        chi2 = prob.misfit(theta)[2]
        path.append((float(a_k), float(chi2), int(res.nit)))
        chosen = (a_k, chi2, theta)
        if alpha is None and chi2 <= tau:
            break
    if chosen is None:
        chosen = (seq[0], float("nan"), theta)
    a_k, chi2, theta = chosen
    status = "fixed-alpha" if alpha is not None else ("discrepancy" if chi2 <= tau else "smallest-alpha")
    status = "failed" if failed else status
    n = op.n_nodes
    g = (np.exp(theta[:n]) + 1j * np.exp(theta[n:])).reshape(data.shape[1:])
    return InversionResult(g, float(a_k), float(chi2), sigma, regularisation, status, tuple(path), total)
