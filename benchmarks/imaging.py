"""Imaging-twin benchmark (issue 19): MRE stiffness inversion accuracy, wall time and memory.

Run:  python benchmarks/imaging.py            (2-D 128^2 pixels, 0/1/3/5 % noise, 3-D 20^3 voxels)
      python benchmarks/imaging.py --quick    (2-D 32^2 at 3 % noise, 3-D 8^3; < 30 s)

Phantom: a stiff inclusion (G* = 6 + 1.5i kPa, radius 15 % of the field of view) in a soft background
(2 + 0.5i kPa), 60 Hz, density 1000 kg/m^3; field of view 100 mm (full) or 40 mm (quick).  The images are
computed with P2 elements on a mesh twice as fine as the pixel grid, absorbing boundaries, two drivers (no
inverse crime); Gaussian noise of p * rms|u| is added to each real component.  The regularised inversion
(P1 on the pixel grid, adjoint gradient, TV or Tikhonov, discrepancy principle) is shown beside the direct
algebraic Helmholtz inversion (unfiltered, and Gaussian-filtered with sigma = 1.5 px).

Acceptance (issue 19): regularised inversion at 3 % noise: background mean absolute error of G' < 10 %,
inclusion contrast error < 20 %.  Times are printed as ratios to the Helmholtz inversion of the same
images (the baseline, measured in the same run).  Memory: peak RSS of the process and the tracemalloc peak
of one 2-D inversion (NumPy/SciPy buffers; SuperLU's own factor storage is outside tracemalloc).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.imaging import add_noise, helmholtz_inversion, inclusion_phantom, invert, synthesize  # noqa: E402


def _rois(acq, margin):
    n = acq.truth.shape
    inner = np.zeros(n, bool)
    inner[(slice(margin, -margin),) * len(n)] = True
    return acq.masks["background"] & inner, acq.masks["region0"]


def _errors(acq, g, margin):
    bg, inc = _rois(acq, margin)
    t = acq.truth.real
    mae = float(np.mean(np.abs(g.real[bg] - t[bg]) / t[bg]))
    contrast = float((g.real[inc].mean() / g.real[bg].mean()) / (t[inc].mean() / t[bg].mean()) - 1.0)
    return mae, contrast


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def accuracy_table(acq, levels, regs, margin):
    print(f"\n{'noise':>6} {'method':<26} {'bg MAE':>8} {'contrast err':>13} {'time s':>8} {'alpha':>8} {'status':>15}")
    rows = {}
    for p in levels:
        data = add_noise(acq.clean, p, 100 + int(round(1000 * p))) if p > 0 else acq.clean
        for name, sigma in (("Helmholtz (unfiltered)", 0.0), ("Helmholtz (filter 1.5 px)", 1.5)):
            g, dt = _timed(lambda: helmholtz_inversion(data, acq.h, acq.rho, acq.omega, sigma_px=sigma))
            mae, c = _errors(acq, g, margin)
            rows[(p, name)] = (mae, c, dt)
            print(f"{p:6.0%} {name:<26} {mae:8.1%} {c:+13.1%} {dt:8.3f} {'':>8} {'':>15}")
        for reg in (regs if p == 0.03 else regs[:1]):  # Tikhonov at 3 % only (time)
            res, dt = _timed(lambda: invert(data, acq.h, acq.rho, acq.omega, regularisation=reg))
            mae, c = _errors(acq, res.modulus, margin)
            rows[(p, reg)] = (mae, c, dt)
            rows[(p, reg, "result")] = res
            print(f"{p:6.0%} {'FEM ' + reg:<26} {mae:8.1%} {c:+13.1%} {dt:8.1f} {res.alpha:8.3g} {res.status:>15}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    n2, fov2, levels, regs = (32, 0.032, (0.03,), ("tv",)) if args.quick else (128, 0.1, (0.0, 0.01, 0.03, 0.05),
                                                                               ("tv", "tikhonov"))
    n3, fov3 = (8, 0.024) if args.quick else (20, 0.04)
    margin = 3 if args.quick else 4

    acq, dt = _timed(lambda: synthesize(inclusion_phantom(length=fov2, radius=0.15 * fov2), n2, refine=2))
    print(f"2-D data: {n2}x{n2} pixels of {acq.h * 1e3:.2f} mm, 2 excitations, P2 on a {2 * (n2 - 1)}^2-cell "
          f"mesh: {dt:.1f} s")
    rows = accuracy_table(acq, levels, regs, margin)

    # timing (the table's 3 % TV run) and memory (20 iterations at its weight: the same buffers per iteration)
    data = add_noise(acq.clean, 0.03, 130)
    _, t_ahi = _timed(lambda: helmholtz_inversion(data, acq.h, acq.rho, acq.omega))
    t_fem, res = rows[(0.03, "tv")][2], rows[(0.03, "tv", "result")]
    tracemalloc.start()
    invert(data, acq.h, acq.rho, acq.omega, alpha=res.alpha, maxiter=20)
    peak_py = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\n2-D {n2}^2 regularised inversion (TV, 3 %): {t_fem:.1f} s wall, {res.iterations} L-BFGS iterations "
          f"over {len(res.path)} weights, {t_fem / max(res.iterations, 1) * 1e3:.0f} ms/iteration (forward + adjoint "
          f"solve); Helmholtz baseline {t_ahi * 1e3:.1f} ms: ratio {t_fem / t_ahi:.0f}x")
    print(f"memory: tracemalloc peak of a {n2}^2 inversion {peak_py / 2 ** 20:.1f} MiB")

    # 3-D small volume (P1 data on a mesh twice as fine: P2 3-D data would dominate the run)
    acq3, dt3 = _timed(lambda: synthesize(inclusion_phantom(length=fov3, radius=0.2 * fov3, dim=3), n3, refine=2,
                                          order=1, noise=0.03, seed=3))
    ahi3, t_ahi3 = _timed(lambda: helmholtz_inversion(acq3.data, acq3.h, acq3.rho, acq3.omega))
    res3, t3 = _timed(lambda: invert(acq3.data, acq3.h, acq3.rho, acq3.omega, maxiter=100))
    m3 = _errors(acq3, res3.modulus, 2)
    a3 = _errors(acq3, ahi3, 2)
    print(f"\n3-D {n3}^3 voxels of {acq3.h * 1e3:.2f} mm (data {dt3:.1f} s), 3 % noise: regularised inversion "
          f"{t3:.1f} s ({res3.iterations} iterations, alpha {res3.alpha:.3g}, {res3.status}): bg MAE {m3[0]:.1%}, "
          f"contrast err {m3[1]:+.1%}; Helmholtz (filtered) {t_ahi3 * 1e3:.1f} ms: bg MAE {a3[0]:.1%}, contrast "
          f"err {a3[1]:+.1%}; ratio {t3 / t_ahi3:.0f}x")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole benchmark: {rss:.0f} MiB")

    mae, c, _ = rows[(0.03, "tv")]
    ok = mae < 0.10 and abs(c) < 0.20
    print(f"\nacceptance at 3 % noise (FEM TV): background MAE {mae:.1%} (< 10 %), contrast error {c:+.1%} "
          f"(|.| < 20 %): {'MET' if ok else 'NOT MET'}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
