"""medtwin: medical digital twins — mechanistic models, NONMEM dosing, batched simulation."""

import os as _os

# OpenBLAS's own worker threads spin against JAX's and numba's on small machines: measured ~100x slower MPC
# steps (SLSQP's small dense solves) on 2 cores.  medtwin's dense algebra is small, so one BLAS thread is the
# fast choice; set before numpy loads, and a value the user set is kept (docs/decisions.md).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, check_well_posedness
from medtwin.core.simulate import SolverSettings, Trajectory, simulate
from medtwin.core.status import Status
from medtwin.errors import (
    DataError,
    DatasetError,
    MedtwinError,
    ModelError,
    ParameterError,
    SimulationError,
    WellPosednessError,
)
from medtwin.models import get_model, list_models

__version__ = "0.1.0"

__all__ = [
    "DataError", "DatasetError", "DoseEvent", "DoseTarget", "MedtwinError", "Model", "ModelError",
    "Output", "Parameter", "ParameterError", "Regimen", "SimulationError", "SolverSettings", "State",
    "Status", "Trajectory", "WellPosednessError", "check_well_posedness", "get_model", "list_models",
    "simulate", "__version__",
]
