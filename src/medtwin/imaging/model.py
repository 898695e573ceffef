"""The forward model a recorded imaging run names (``mre_helmholtz``), digested by the source of its solvers.

Examples
--------
>>> FORWARD_MODEL.name, len(FORWARD_MODEL.digest())
('mre_helmholtz', 64)
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass

from medtwin.imaging import elastogram, forward, grid, helmholtz, inversion

__all__ = ["FORWARD_MODEL", "ForwardModel"]


@dataclass(frozen=True)
class ForwardModel:
    """What an ``mre`` run records as its model.

    ``digest()`` is the SHA-256 of the source of the forward solvers, the inversion's grid operator, the
    Helmholtz and regularised inversions and the elastogram pipeline: a changed solver shows as a changed
    model in :func:`medtwin.workflows.reproduce`.
    """

    name: str = "mre_helmholtz"
    description: str = ("time-harmonic viscoelastic shear-wave equation div(G* grad u) + rho omega^2 u = 0 "
                        "(P1 on the pixel grid for inversion; P1/P2 and Taylor-Hood vector forms for data)")

    def digest(self) -> str:
        parts = [inspect.getsource(m) for m in (forward, grid, helmholtz, inversion, elastogram)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


#: The forward model every imaging run records.
FORWARD_MODEL = ForwardModel()
