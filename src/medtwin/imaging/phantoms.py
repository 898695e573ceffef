"""Stiffness phantoms for MR elastography: homogeneous, circular/spherical inclusions, a liver-like section.

A :class:`Phantom` is a complex shear modulus field ``G*(x) = G'(x) + i G''(x)`` (Pa) on a box
``[0, L]^d`` (m), with the density ``rho`` (kg/m^3) and the regions (masks) used for region-of-interest
summaries.  Inclusion edges are smoothed over ``edge`` metres (a tanh ramp) so that the forward model's
quadrature sees a resolved interface.

Values: healthy liver |G*| about 2 kPa and fibrotic/cirrhotic liver 4-8 kPa at 60 Hz (Yin M, Talwalkar JA,
Glaser KJ et al., Clin Gastroenterol Hepatol 2007;5:1207-1213, doi:10.1016/j.cgh.2007.06.012); the loss
modulus G''/G' about 0.2-0.4 (Asbach P, Klatt D, Hamhaber U et al., Magn Reson Med 2008;60:373-379).

Examples
--------
>>> import numpy as np
>>> p = inclusion_phantom()
>>> g = p.modulus(np.array([[0.05, 0.005], [0.05, 0.05]]))   # centre of the inclusion, then near the edge
>>> [round(float(v.real)) for v in g]
[6000, 2000]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medtwin.errors import DataError

__all__ = ["Phantom", "homogeneous_phantom", "inclusion_phantom", "liver_phantom"]


@dataclass(frozen=True)
class Phantom:
    """A piecewise-smooth complex shear modulus on the box ``[0, length]^dim``.

    Attributes
    ----------
    name : str
    dim : int
        2 or 3.
    length : float
        Side of the box (m).
    background : complex
        G* of the background (Pa).
    regions : tuple of (kind, centre, radii, G*)
        ``kind`` "ellipse" (ellipsoid in 3-D); ``centre`` (m, length ``dim``), ``radii`` (m), ``G*`` (Pa).
        Later regions are painted over earlier ones.
    rho : float
        Density (kg/m^3).
    edge : float
        Width of the smoothed interface (m).
    """

    name: str
    dim: int
    length: float
    background: complex
    regions: tuple = ()
    rho: float = 1000.0
    edge: float = 0.4e-3
    labels: tuple = field(default=())

    def __post_init__(self):
        if self.dim not in (2, 3):
            raise DataError(f"phantom dimension must be 2 or 3, not {self.dim}")
        if not self.length > 0 or not self.rho > 0:
            raise DataError("phantom length (m) and density (kg/m^3) must be positive")
        if complex(self.background).real <= 0:
            raise DataError("the background storage modulus G' must be positive (Pa)")

    def _distance(self, x, region):
        """Signed distance-like level set (m): negative inside the ellipse/ellipsoid."""
        _, centre, radii, _ = region
        c = np.asarray(centre, dtype=float).reshape((-1,) + (1,) * (x.ndim - 1))
        r = np.asarray(radii, dtype=float).reshape((-1,) + (1,) * (x.ndim - 1))
        rho = np.sqrt(np.sum(((x - c) / r) ** 2, axis=0))
        return (rho - 1.0) * float(np.min(radii))

    def modulus(self, x) -> np.ndarray:
        """G*(x) (Pa, complex) at points ``x`` of shape (dim, ...)."""
        x = np.asarray(x, dtype=float)
        if x.shape[0] != self.dim:
            raise DataError(f"points must have shape ({self.dim}, ...), got {x.shape}")
        g = np.full(x.shape[1:], complex(self.background), dtype=complex)
        for region in self.regions:
            weight = 0.5 * (1.0 - np.tanh(self._distance(x, region) / (0.5 * self.edge)))
            g = g + weight * (complex(region[3]) - g)
        return g

    def masks(self, x, shrink: float = 0.75, grow: float = 1.5) -> dict:
        """Boolean ROI masks at points ``x`` (dim, ...): ``"background"`` (outside every region grown by
        ``grow``) and one ``"region<i>"`` per region (inside it shrunk by ``shrink``)."""
        x = np.asarray(x, dtype=float)
        out = {}
        outside = np.ones(x.shape[1:], dtype=bool)
        for i, (kind, centre, radii, g) in enumerate(self.regions):
            c = np.asarray(centre, dtype=float).reshape((-1,) + (1,) * (x.ndim - 1))
            r = np.asarray(radii, dtype=float).reshape((-1,) + (1,) * (x.ndim - 1))
            rho = np.sqrt(np.sum(((x - c) / r) ** 2, axis=0))
            out[f"region{i}"] = rho < shrink
            outside &= rho > grow
        out["background"] = outside
        return out


def homogeneous_phantom(g: complex = 2000 + 500j, *, dim: int = 2, length: float = 0.1) -> Phantom:
    """A uniform medium (healthy liver by default: G* = 2 + 0.5i kPa)."""
    return Phantom("homogeneous", dim, length, complex(g))


def inclusion_phantom(background: complex = 2000 + 500j, inclusion: complex = 6000 + 1500j, *,
                      radius: float = 0.015, dim: int = 2, length: float = 0.1, centre=None) -> Phantom:
    """One stiff circular (spherical in 3-D) inclusion in a soft background (contrast 3 by default)."""
    centre = tuple([length / 2] * dim) if centre is None else tuple(centre)
    return Phantom("inclusion", dim, length, complex(background),
                   (("ellipse", centre, (radius,) * dim, complex(inclusion)),))


def liver_phantom(*, length: float = 0.1) -> Phantom:
    """A 2-D liver-like section: a mildly fibrotic parenchyma (2.8 kPa) holding two fibrotic regions (4.5 and
    6.5 kPa, elliptical) and a soft vessel-like region (1.2 kPa); G''/G' = 0.25.
    """
    L = length
    par = 2800 * (1 + 0.25j)
    return Phantom("liver", 2, L, par, (
        ("ellipse", (0.32 * L, 0.62 * L), (0.16 * L, 0.11 * L), 4500 * (1 + 0.25j)),
        ("ellipse", (0.68 * L, 0.35 * L), (0.12 * L, 0.12 * L), 6500 * (1 + 0.25j)),
        ("ellipse", (0.70 * L, 0.75 * L), (0.05 * L, 0.05 * L), 1200 * (1 + 0.25j)),
    ))
