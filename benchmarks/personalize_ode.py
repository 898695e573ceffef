"""Personalization of nonlinear models (issue 13 item 2): Michaelis–Menten PK and the Bergman glucose model.

Run:  python benchmarks/personalize_ode.py            (gradients, Laplace, NUTS 4 chains x 500 draws)
      python benchmarks/personalize_ode.py --quick    (gradients and Laplace only)

Per model, in one process:

* the gradient of the −log posterior: forward mode (diffrax ``ForwardMode``
  under a ``custom_jvp``, what personalize uses) against the baseline, reverse
  mode through diffrax's ``RecursiveCheckpointAdjoint``; compile time apart,
  warm time the median of 20 calls, and their ratio;
* MAP + Laplace: the first patient (compilation included) and warm calls on
  patients with 1, 2, 3 and 5 observations (one shared compilation);
* NUTS: the first patient (compilation of the sampler included) and a second
  patient with other data but the same padded shapes (no recompilation).

The patients are those of ``tests/verification/test_personalize_nonlinear.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import importlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verification"))
import test_personalize_nonlinear as cases  # noqa: E402

personalize_module = importlib.import_module("medtwin.infer.personalize")
personalize = personalize_module.personalize


def _gradient_times(model, pop, data, adjoint):
    import jax
    import jax.numpy as jnp

    prior = pop.prior_for({})
    mean, cov = np.asarray(prior.log_mean), np.asarray(prior.covariance)
    args = personalize_module._args(model, prior, mean, cov, [personalize_module._batch(model, prior, data)])
    _, value_grad = personalize_module._potential(model, ode_adjoint=adjoint)
    z = jnp.asarray(mean)
    t0 = time.perf_counter()
    jax.block_until_ready(value_grad(z, args))
    compile_s = time.perf_counter() - t0
    runs = []
    for k in range(20):
        t0 = time.perf_counter()
        jax.block_until_ready(value_grad(z + 1e-3 * k, args))
        runs.append(time.perf_counter() - t0)
    return compile_s, float(np.median(runs)), np.asarray(value_grad(z, args)[1])


def main(quick: bool) -> None:
    from medtwin.models import get_model

    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")}, "cpus:", os.cpu_count())
    for name, build in cases.CASES.items():
        pop, data, _ = build()
        model = get_model(pop.model).with_changes()  # a fresh compile cache: first calls include compilation
        fc, fw, fg = _gradient_times(model, pop, data, "forward")
        rc, rw, rg = _gradient_times(model, pop, data, "reverse")
        print(f"\n{name}: gradient of -log posterior ({len(fg)} parameters), same values: "
              f"{np.allclose(fg, rg, rtol=1e-6)}")
        print(f"  forward mode (used):        compile {fc:6.2f} s, warm {fw * 1e3:7.2f} ms")
        print(f"  reverse, checkpointed:      compile {rc:6.2f} s, warm {rw * 1e3:7.2f} ms  "
              f"(forward is {rw / fw:.1f}x faster warm, {rc / fc:.1f}x faster to compile)")
        model = get_model(pop.model).with_changes()
        t0 = time.perf_counter()
        post = personalize(pop, data, model=model)
        first = time.perf_counter() - t0
        warm = []
        for j in (1, 2, 3, 5):
            t0 = time.perf_counter()
            personalize(pop, data.first(j), model=model)
            warm.append(time.perf_counter() - t0)
        print(f"  Laplace: first patient {first:6.2f} s (compilation included), then 1/2/3/5 observations "
              f"{', '.join(f'{w:.3f}' for w in warm)} s ({post.status})")
        if quick:
            continue
        t0 = time.perf_counter()
        post = personalize(pop, data, method="nuts", chains=4, draws=500, warmup=500, model=model, seed=1)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = personalize(pop, data.first(3), method="nuts", chains=4, draws=500, warmup=500, model=model,
                             seed=2)
        again = time.perf_counter() - t0
        print(f"  NUTS 4x500: first patient {first:6.2f} s (sampler compiled), second patient {again:6.2f} s "
              f"(compiled once: {first / again:.1f}x); {post.message}; {second.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
