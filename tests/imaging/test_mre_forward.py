"""The MRE forward model against analytic plane waves (observed convergence orders), and the inversion's
grid operator and adjoint gradient against scikit-fem's assembly and finite differences."""

import numpy as np
import pytest
import skfem
from skfem.helpers import dot, grad

from medtwin.errors import DataError
from medtwin.imaging.forward import (l2_error, l2_norm, plane_shear_wave, plane_wave, sample, solve_scalar,
                                     solve_vector, unit_mesh, wavenumber)
from medtwin.imaging.grid import GridOperator
from medtwin.imaging.helmholtz import helmholtz_inversion
from medtwin.imaging.inversion import _Problem, estimate_noise
from medtwin.imaging.synthetic import grid_points

RHO, OMEGA, G = 1000.0, 2 * np.pi * 60.0, 2000.0 + 400.0j


def _orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize("order, sizes, expected", [(1, (16, 32, 64), 2.0), (2, (8, 16, 32), 3.0)])
def test_scalar_plane_wave_converges_at_the_element_order(order, sizes, expected):
    exact = plane_wave(G, RHO, OMEGA, (1.0, 0.5))
    errors = [l2_error(s, exact) / l2_norm(s) for s in
              (solve_scalar(unit_mesh(2, n, length=0.05), G, RHO, OMEGA, dirichlet=exact, order=order)
               for n in sizes)]
    orders = _orders(errors)
    assert errors[-1] < (0.03 if order == 1 else 2e-3)
    assert abs(orders[-1] - expected) < 0.4, (errors, orders)


def test_vector_taylor_hood_shear_wave_nearly_incompressible_2d():
    """A plane shear wave is divergence-free: exact for any lambda; lambda = 1e5 |G*| must not lock."""
    exact = plane_shear_wave(G, RHO, OMEGA, (1.0, 0.5), (-0.5, 1.0))
    errors, pressures = [], []
    for n in (4, 8, 16):
        sol = solve_vector(unit_mesh(2, n, length=0.05), G, RHO, OMEGA, dirichlet=exact, lam_ratio=1e5)
        errors.append(l2_error(sol, exact) / l2_norm(sol))
        pressures.append(np.abs(sol.p).max())
    orders = _orders(errors)
    assert errors[-1] < 0.01 and orders[-1] > 2.7, (errors, orders)
    assert pressures[-1] < pressures[0] / 50  # p -> 0, the exact pressure


def test_3d_scalar_and_vector_forms_converge():
    exact = plane_wave(G, RHO, OMEGA, (1.0, 0.4, 0.2))
    e = [l2_error(s, exact) / l2_norm(s) for s in
         (solve_scalar(unit_mesh(3, n, length=0.03), G, RHO, OMEGA, dirichlet=exact, order=2) for n in (2, 4))]
    assert _orders(e)[0] > 2.5, e
    assert e[1] < 0.2, e
    vec = plane_shear_wave(G, RHO, OMEGA, (1.0, 0.4, 0.2), (-0.4, 1.0, 0.0))
    sol2, sol4 = (solve_vector(unit_mesh(3, n, length=0.03), G, RHO, OMEGA, dirichlet=vec) for n in (2, 3))
    e2, e4 = l2_error(sol2, vec) / l2_norm(sol2), l2_error(sol4, vec) / l2_norm(sol4)
    assert np.log(e2 / e4) / np.log(3 / 2) > 2.2, (e2, e4)  # P2: order 3 asymptotically (2.48 measured)


def test_plane_wave_solves_the_helmholtz_equation():
    """The reference itself: G* k^2 = rho omega^2 and the wave decays along its path."""
    k = wavenumber(G, RHO, OMEGA)
    assert k.imag > 0 and abs(G * k ** 2 - RHO * OMEGA ** 2) < 1e-9 * RHO * OMEGA ** 2


def test_sample_on_vertices_equals_probes():
    exact = plane_wave(G, RHO, OMEGA, (1.0, 0.0))
    sol = solve_scalar(unit_mesh(2, 8, length=0.04), G, RHO, OMEGA, dirichlet=exact, order=2)
    pts = grid_points((5, 5), 0.01).reshape(2, -1)
    np.testing.assert_allclose(sample(sol, pts), sol.basis.probes(pts) @ sol.u, rtol=1e-12, atol=1e-20)


def test_grid_operator_matches_scikit_fem_assembly():
    op = GridOperator((7, 6), 2e-3)
    rng = np.random.default_rng(0)
    g = 2000 + 1000 * rng.random(op.n_nodes) + 1j * (300 + 100 * rng.random(op.n_nodes))
    mesh = skfem.MeshTri(op.points, op.elements.T)
    basis = skfem.Basis(mesh, skfem.ElementTriP1(), intorder=2)
    gi = np.asarray(basis.interpolate(g.real)) + 1j * np.asarray(basis.interpolate(g.imag))

    @skfem.BilinearForm
    def k_re(u, v, w):
        return w.g * dot(grad(u), grad(v))

    ref = k_re.assemble(basis, g=gi.real) + 1j * k_re.assemble(basis, g=gi.imag)
    np.testing.assert_allclose(op.stiffness(g).toarray(), ref.toarray(), rtol=1e-10, atol=1e-8)
    m = skfem.BilinearForm(lambda u, v, w: u * v).assemble(basis)
    np.testing.assert_allclose(op.mass_consistent.toarray(), m.toarray(), rtol=1e-12, atol=1e-18)
    with pytest.raises(DataError):
        GridOperator((2, 5), 1e-3)


@pytest.mark.parametrize("reg", ["tv", "tikhonov"])
def test_adjoint_gradient_matches_finite_differences(reg):
    shape, h = (9, 8), 2e-3
    x = grid_points(shape, h)
    data = np.stack([plane_wave(G, RHO, OMEGA, d)(x) for d in ((1.0, 0.2), (0.1, 1.0))])
    data = data + 1e-8 * np.random.default_rng(1).standard_normal(data.shape)
    op = GridOperator(shape, h)
    prob = _Problem(op, data, RHO, OMEGA, 1e-8, reg, 0.02 / h)
    rng = np.random.default_rng(2)
    theta = np.concatenate([np.log(2000.0) + 0.2 * rng.standard_normal(op.n_nodes),
                            np.log(400.0) + 0.2 * rng.standard_normal(op.n_nodes)])
    _, grad_ = prob.objective(theta, 0.05)
    for i in rng.choice(theta.size, 6, replace=False):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        fd = (prob.objective(theta + step, 0.05)[0] - prob.objective(theta - step, 0.05)[0]) / 2e-6
        assert abs(fd - grad_[i]) <= 1e-5 * max(1.0, abs(fd)), (i, fd, grad_[i])


def test_helmholtz_inversion_exact_without_noise_and_noise_estimate():
    h, shape = 1e-3, (40, 40)
    x = grid_points(shape, h)
    u = plane_wave(G, RHO, OMEGA, (1.0, 0.3))(x)[None]
    g = helmholtz_inversion(u, h, RHO, OMEGA, sigma_px=0)[2:-2, 2:-2]
    assert np.max(np.abs(g / G - 1)) < 0.01
    noisy = u + 2e-8 * np.random.default_rng(3).standard_normal(u.shape) * (1 + 1j)
    assert abs(estimate_noise(noisy) / 2e-8 - 1) < 0.1
    with pytest.raises(DataError):
        helmholtz_inversion(u.real, h, RHO, OMEGA)
