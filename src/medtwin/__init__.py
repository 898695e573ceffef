"""medtwin: medical digital twins — mechanistic models, NONMEM dosing, batched simulation."""

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
