"""The ``mre`` request: MR-elastography stiffness inversion as a recorded, reproducible run.

:class:`MRERequest` holds the displacement images (complex, m), the pixel spacing, the frequency and the
settings of :func:`medtwin.imaging.analyse`; its spec stores the images as JSON (real and imaginary parts,
shortest round-trip floats, so that :func:`medtwin.workflows.reproduce` inverts exactly the same numbers)
and names the forward model ``mre_helmholtz`` (:data:`medtwin.imaging.FORWARD_MODEL`, digested by the
source of its solvers).  A patient's images are the consent data class ``imaging``.

Examples
--------
>>> import numpy as np
>>> u = np.ones((1, 6, 6), complex) * 1e-6
>>> r = MRERequest(u, 1e-3, 60.0, open_data="synthetic phantom", n_bootstrap=0)
>>> s = r.spec()
>>> s.operation, s.model, s.settings["regularisation"]
('mre', 'mre_helmholtz', 'tv')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from medtwin.errors import DataError
from medtwin.governance import runs as _runs

__all__ = ["MRERequest", "execute_mre", "mre_request_from_spec"]

_DATA_CLASSES = ("imaging",)


@dataclass(frozen=True, eq=False)
class MRERequest:
    """``analyse(data, h, frequency, **settings)`` on one acquisition (optionally one patient's)."""

    data: Any
    h: float
    frequency: float
    rho: float = 1000.0
    regularisation: str = "tv"
    masks: Mapping | None = None
    n_bootstrap: int = 8
    seed: int = 0
    table: str = "mayo"
    sigma_px: float = 1.5
    maxiter: int = 150
    patient: str | None = None
    purpose: str | None = None
    open_data: str | None = None
    model: Any = field(default=None)
    operation: ClassVar[str] = "mre"

    def __post_init__(self):
        from medtwin.imaging.model import FORWARD_MODEL

        if (self.purpose is None) == (self.open_data is None):
            raise DataError("MRERequest: give exactly one of purpose (consented patient data) and open_data")
        if self.purpose is not None and not self.patient:
            raise DataError("MRERequest: a consented run names its patient (patient=...)")
        data = np.asarray(self.data)
        if not np.iscomplexobj(data) or data.ndim not in (3, 4):
            raise DataError(f"MRERequest: data must be complex images (n_excitations, *grid), got {data.dtype} "
                            f"{data.shape}")
        object.__setattr__(self, "data", data.astype(complex))
        object.__setattr__(self, "model", FORWARD_MODEL)

    def settings(self) -> dict:
        return {"regularisation": self.regularisation, "n_bootstrap": int(self.n_bootstrap), "seed": int(self.seed),
                "table": self.table, "sigma_px": float(self.sigma_px), "maxiter": int(self.maxiter)}

    def spec(self) -> _runs.RunSpec:
        masks = {name: np.flatnonzero(np.asarray(m, bool)).tolist() for name, m in (self.masks or {}).items()}
        inputs = {"displacement": {"shape": list(self.data.shape), "real": self.data.real.ravel().tolist(),
                                   "imag": self.data.imag.ravel().tolist()},
                  "h_m": float(self.h), "frequency_hz": float(self.frequency), "rho": float(self.rho),
                  "masks": masks or None}
        return _runs.RunSpec("mre", self.model.name, inputs, self.settings(),
                             [self.patient] if self.patient else [], self.purpose, self.open_data,
                             {"bootstrap": int(self.seed)})


def mre_request_from_spec(spec: _runs.RunSpec, *, access) -> MRERequest:
    """The request a stored ``mre`` spec describes (the images read through the consent gate)."""
    from medtwin.io.access import authorize

    authorize(access, spec.patients, _DATA_CLASSES, "read")
    d = spec.inputs["displacement"]
    shape = tuple(d["shape"])
    data = (np.asarray(d["real"], float) + 1j * np.asarray(d["imag"], float)).reshape(shape)
    masks = None
    if spec.inputs.get("masks"):
        masks = {}
        for name, idx in spec.inputs["masks"].items():
            m = np.zeros(int(np.prod(shape[1:])), dtype=bool)
            m[np.asarray(idx, dtype=int)] = True
            masks[name] = m.reshape(shape[1:])
    s = spec.settings
    return MRERequest(data, spec.inputs["h_m"], spec.inputs["frequency_hz"], rho=spec.inputs["rho"],
                      regularisation=s["regularisation"], masks=masks, n_bootstrap=s["n_bootstrap"], seed=s["seed"],
                      table=s["table"], sigma_px=s["sigma_px"], maxiter=s["maxiter"],
                      patient=spec.patients[0] if spec.patients else None, purpose=spec.purpose,
                      open_data=spec.open_data)


def execute_mre(request: MRERequest, progress=None, *, access=None):
    """Run :func:`medtwin.imaging.analyse` for the request (the patient's images read through ``access``, the
    consent gate): an :class:`~medtwin.imaging.Elastogram`."""
    from dataclasses import replace

    from medtwin.imaging.elastogram import analyse
    from medtwin.io.access import authorize

    if access is not None:
        authorize(access, [request.patient] if request.patient else [], _DATA_CLASSES, "read")

    if progress is not None:
        progress(0, 1)
    result = analyse(request.data, request.h, request.frequency, rho=request.rho,
                     regularisation=request.regularisation, masks=request.masks, n_bootstrap=request.n_bootstrap,
                     seed=request.seed, table=request.table, sigma_px=request.sigma_px, maxiter=request.maxiter)
    if progress is not None:
        progress(1, 1)
    return replace(result, patient=request.patient)
