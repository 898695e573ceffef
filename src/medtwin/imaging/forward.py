"""Time-harmonic viscoelastic wave equation, solved with scikit-fem (2-D and 3-D).

Vector form (what tissue obeys): ``-rho omega^2 u = div sigma`` with
``sigma = 2 G* eps(u) - p I`` and ``div u + p / lambda = 0`` (mixed displacement-pressure form, Taylor-Hood
P2-P1, so that nearly incompressible tissue, lambda/G ~ 1e5-1e6, does not lock).  ``G* = G' + i G''`` (Pa)
is the complex shear modulus, rho (kg/m^3) the density, omega = 2 pi f (rad/s).

Scalar (shear-wave) form: ``div(G* grad u) + rho omega^2 u = 0`` for one displacement component.  It is exact
for anti-plane shear (u = (0, 0, w(x, y)), no dependence on z: div u = 0, so lambda and p drop out and the
vector equation reduces to this one for w in a heterogeneous medium); it is the model of 2-D MRE inversion.
The inversion (:mod:`~medtwin.imaging.inversion`) works with it; the vector form is verified against the
same plane shear wave and shows the reduction.

Boundary excitation: Dirichlet data on driven faces (the driver), first-order absorbing (impedance)
condition ``G* du/dn = i omega sqrt(rho G*) u`` on the others, or Dirichlet data everywhere (the analytic
plane-wave verification).  Complex systems are assembled from real forms (``K[G'] + i K[G''] - rho omega^2 M``)
and solved by sparse LU (SuperLU).

Examples
--------
>>> import numpy as np
>>> mesh = unit_mesh(2, 8, length=0.05)
>>> w = plane_wave(2000 + 400j, 1000.0, 2 * np.pi * 60, direction=(1.0, 0.0))
>>> sol = solve_scalar(mesh, 2000 + 400j, 1000.0, 2 * np.pi * 60, dirichlet=w, order=2)
>>> bool(l2_error(sol, w) / l2_norm(sol) < 0.05)   # 8 cells for two wavelengths, P2
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import skfem
from skfem.helpers import ddot, div, dot, grad, sym_grad

from medtwin.errors import DataError

__all__ = ["Solution", "l2_error", "l2_norm", "plane_wave",
           "plane_shear_wave", "sample", "solve_scalar", "solve_vector", "unit_mesh", "wavenumber"]


def wavenumber(g: complex, rho: float, omega: float) -> complex:
    """Complex shear wavenumber ``k = omega sqrt(rho / G*)`` (1/m), the root with Im k >= 0 (a wave decaying
    as it travels)."""
    k = omega * np.sqrt(rho / complex(g))
    return k if k.imag >= 0 else -k


def plane_wave(g: complex, rho: float, omega: float, direction=(1.0, 0.0), amplitude: float = 1e-6):
    """The analytic scalar plane wave ``u(x) = A exp(i k d.x)`` (m) of a homogeneous medium, as a callable of
    points (dim, ...)."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    k = wavenumber(g, rho, omega)

    def u(x):
        x = np.asarray(x)
        phase = np.tensordot(d, x, axes=(0, 0))
        return amplitude * np.exp(1j * k * phase)

    return u


def plane_shear_wave(g: complex, rho: float, omega: float, direction, polarisation, amplitude: float = 1e-6):
    """The analytic vector plane shear wave ``u(x) = A e exp(i k d.x)`` (e perpendicular to d: div u = 0, p = 0),
    a callable returning shape (dim, ...)."""
    d, e = np.asarray(direction, float), np.asarray(polarisation, float)
    if abs(d @ e) > 1e-12 * np.linalg.norm(d) * np.linalg.norm(e):
        raise DataError("a shear wave's polarisation must be perpendicular to its direction")
    scalar = plane_wave(g, rho, omega, d, amplitude)
    e = e / np.linalg.norm(e)

    def u(x):
        s = scalar(x)
        return e.reshape((-1,) + (1,) * s.ndim) * s[None]

    return u


def unit_mesh(dim: int, n: int, *, length: float = 0.1):
    """A structured simplex mesh of ``[0, length]^dim`` with ``n`` cells per side (triangles / tetrahedra)."""
    if dim not in (2, 3) or n < 1:
        raise DataError(f"unit_mesh needs dim 2 or 3 and n >= 1, got dim={dim}, n={n}")
    t = np.linspace(0.0, length, n + 1)
    if dim == 2:
        return skfem.MeshTri.init_tensor(t, t)
    return skfem.MeshTet.init_tensor(t, t, t)


def _elements(dim: int, order: int):
    table = {(2, 1): skfem.ElementTriP1, (2, 2): skfem.ElementTriP2,
             (3, 1): skfem.ElementTetP1, (3, 2): skfem.ElementTetP2}
    if (dim, order) not in table:
        raise DataError(f"order must be 1 or 2, got {order}")
    return table[(dim, order)]()


def _as_field(g) -> Callable:
    if callable(g):
        return g
    value = complex(g)
    return lambda x: np.full(np.shape(x)[1:], value)


@dataclass(frozen=True)
class Solution:
    """A finite-element displacement field: ``basis`` (skfem) and complex nodal values ``u`` (m); for the
    vector form also the pressure ``p`` (Pa) on ``pressure_basis``."""

    basis: object
    u: np.ndarray
    p: np.ndarray | None = None
    pressure_basis: object | None = None


def _solve_dirichlet(A, b, boundary_dofs, values):
    """Solve ``A x = b`` with ``x[D] = values``: interior block by sparse LU."""
    n = A.shape[0]
    x = np.zeros(n, dtype=complex)
    x[boundary_dofs] = values
    interior = np.setdiff1d(np.arange(n), boundary_dofs)
    A = A.tocsr()
    rhs = b[interior] - A[interior][:, boundary_dofs] @ values
    x[interior] = spla.splu(A[interior][:, interior].tocsc()).solve(rhs)
    return x


def solve_scalar(mesh, g, rho: float, omega: float, *, dirichlet, order: int = 1, driven=None,
                 absorbing: bool = False) -> Solution:
    """Solve ``div(G* grad u) + rho omega^2 u = 0`` on ``mesh`` (m) with Lagrange elements of ``order``.

    Parameters
    ----------
    mesh : skfem.MeshTri or skfem.MeshTet
    g : complex or callable
        G* (Pa): a constant or a function of points (dim, ...) returning complex values.
    rho, omega : float
        Density (kg/m^3) and angular frequency (rad/s).
    dirichlet : callable
        Boundary displacement (m) as a function of points (dim, ...).
    order : {1, 2}
    driven : callable, optional
        ``driven(x) -> bool`` for boundary points (dim, N): where the Dirichlet data hold; the other boundary
        facets get the absorbing condition when ``absorbing``; by default all of the boundary is Dirichlet.
    absorbing : bool
        Impedance condition ``G* du/dn = i omega sqrt(rho G*) u`` on the facets not driven.
    """
    if not (rho > 0 and omega > 0):
        raise DataError("density (kg/m^3) and angular frequency (rad/s) must be positive")
    field_ = _as_field(g)
    basis = skfem.Basis(mesh, _elements(mesh.dim(), order), intorder=2 * order + 1)

    @skfem.BilinearForm
    def stiff_re(u, v, w):
        return field_(w.x).real * dot(grad(u), grad(v))

    @skfem.BilinearForm
    def stiff_im(u, v, w):
        return field_(w.x).imag * dot(grad(u), grad(v))

    @skfem.BilinearForm
    def mass(u, v, w):
        return u * v

    A = (stiff_re.assemble(basis) + 1j * stiff_im.assemble(basis) - rho * omega ** 2 * mass.assemble(basis))
    facets = mesh.boundary_facets()
    if driven is not None:
        mids = mesh.p[:, mesh.facets[:, facets]].mean(axis=1)
        keep = np.asarray(driven(mids), dtype=bool)
        dir_facets, abs_facets = facets[keep], facets[~keep]
    else:
        dir_facets, abs_facets = facets, facets[:0]
    if absorbing and abs_facets.size:
        fb = skfem.FacetBasis(mesh, basis.elem, facets=abs_facets, intorder=2 * order + 1)

        @skfem.BilinearForm
        def imp_re(u, v, w):
            return np.sqrt(rho * field_(w.x)).real * u * v

        @skfem.BilinearForm
        def imp_im(u, v, w):
            return np.sqrt(rho * field_(w.x)).imag * u * v

        # -i omega sqrt(rho G*) on the absorbing facets (weak form: - int G* du/dn v)
        A = A - 1j * omega * (imp_re.assemble(fb) + 1j * imp_im.assemble(fb))
    D = basis.get_dofs(dir_facets).all()
    values = np.asarray(dirichlet(basis.doflocs[:, D]), dtype=complex)
    u = _solve_dirichlet(A, np.zeros(A.shape[0], dtype=complex), D, values)
    return Solution(basis, u)


def solve_vector(mesh, g, rho: float, omega: float, *, dirichlet, lam: float | None = None,
                 lam_ratio: float = 1e5) -> Solution:
    """Solve ``-rho omega^2 u = div(2 G* eps(u) - p I)``, ``div u + p/lambda = 0`` (Taylor-Hood P2-P1).

    Parameters
    ----------
    mesh : skfem.MeshTri or skfem.MeshTet
    g : complex or callable
        G* (Pa).
    rho, omega : float
        kg/m^3, rad/s.
    dirichlet : callable
        Displacement (m) on the whole boundary, a function of points (dim, N) returning (dim, N).
    lam : float, optional
        First Lame parameter (Pa); default ``lam_ratio * |G*|`` of the mean modulus (nearly incompressible).
    """
    dim = mesh.dim()
    field_ = _as_field(g)
    ev = skfem.ElementVector(_elements(dim, 2))
    ub = skfem.Basis(mesh, ev, intorder=5)
    pb = skfem.Basis(mesh, _elements(dim, 1), intorder=5)
    if lam is None:
        lam = lam_ratio * float(np.abs(np.mean(field_(mesh.p))))

    @skfem.BilinearForm
    def k_re(u, v, w):
        return 2.0 * field_(w.x).real * ddot(sym_grad(u), sym_grad(v))

    @skfem.BilinearForm
    def k_im(u, v, w):
        return 2.0 * field_(w.x).imag * ddot(sym_grad(u), sym_grad(v))

    @skfem.BilinearForm
    def vmass(u, v, w):
        return dot(u, v)

    @skfem.BilinearForm
    def coupling(u, q, w):
        return div(u) * q

    @skfem.BilinearForm
    def pmass(p, q, w):
        return p * q

    K = k_re.assemble(ub) + 1j * k_im.assemble(ub) - rho * omega ** 2 * vmass.assemble(ub)
    B = coupling.assemble(ub, pb)
    C = pmass.assemble(pb) / lam
    A = sp.bmat([[K, -B.T], [-B, -C]], format="csr")
    # Dirichlet dofs of the displacement; ElementVector dof locations hold each component's own node
    D = ub.get_dofs().all()
    locs = ub.doflocs[:, D]
    comp = _vector_components(ub, D, dim)
    exact = np.asarray(dirichlet(locs), dtype=complex)
    values = exact[comp, np.arange(D.size)]
    x = _solve_dirichlet(A, np.zeros(A.shape[0], dtype=complex), D, values)
    return Solution(ub, x[:ub.N], x[ub.N:], pb)


def _vector_components(ub, dofs, dim):
    """Which component each displacement dof of an ElementVector basis is (0..dim-1)."""
    comp = np.empty(ub.N, dtype=int)
    for c in range(dim):
        comp[ub.split_indices()[c]] = c
    return comp[dofs]


def _field_values(sol: Solution, exact):
    """(FE field at quadrature points, exact field there) for the L2 norms, complex."""
    basis = sol.basis
    uh = np.asarray(basis.interpolate(sol.u.real)) + 1j * np.asarray(basis.interpolate(sol.u.imag))
    x = np.asarray(basis.global_coordinates())
    ue = None if exact is None else np.asarray(exact(x), dtype=complex)
    return uh, ue


def _integrate(basis, values):
    """Integral over the mesh of a quadrature-point array (…, nel, nqp)."""
    w = basis.dx
    while values.ndim > 2:
        values = values.sum(axis=0)
    return float(np.sum(values * w))


def l2_error(sol: Solution, exact) -> float:
    """``||u_h - u||_L2`` (m * m^(dim/2)) against an analytic field (callable of points)."""
    uh, ue = _field_values(sol, exact)
    return float(np.sqrt(_integrate(sol.basis, np.abs(uh - ue) ** 2)))


def l2_norm(sol: Solution) -> float:
    """``||u_h||_L2``."""
    uh, _ = _field_values(sol, None)
    return float(np.sqrt(_integrate(sol.basis, np.abs(uh) ** 2)))


def sample(sol: Solution, points) -> np.ndarray:
    """The FE field at ``points`` (dim, N) (m): shape (N,) scalar, (dim, N) vector; complex."""
    pts = np.asarray(points, dtype=float)
    mesh = sol.basis.mesh
    if not isinstance(sol.basis.elem, skfem.ElementVector):
        # points on mesh vertices (a pixel grid inside a refined mesh): the vertex dofs come first
        scale = float(np.ptp(mesh.p)) or 1.0
        key = lambda q: np.round(q / scale * 1e9).astype(np.int64)  # noqa: E731
        lookup = {tuple(v): i for i, v in enumerate(key(mesh.p).T)}
        idx = [lookup.get(tuple(v)) for v in key(pts).T]
        if all(i is not None for i in idx):
            return sol.u[np.asarray(idx, dtype=int)]
    P = sol.basis.probes(pts)
    vals = P @ sol.u
    if isinstance(sol.basis.elem, skfem.ElementVector):
        return vals.reshape(pts.shape[0], -1) if vals.ndim == 1 and vals.size != pts.shape[1] else vals
    return vals
