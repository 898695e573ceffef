"""medtwin: medical digital twins — mechanistic models, NONMEM dosing, batched simulation.

The public API: every name in ``__all__`` is importable from ``medtwin``.  Only
the errors load with the package; the rest (models, regimens, ``simulate``,
``personalize``, ``Twin``, ``recommend_dose``, ``MPCController``, the file
readers ...) load on first use, so ``import medtwin`` (and with it every
``medtwin`` command-line process, ``--help`` included) stays cheap.

Examples
--------
>>> import medtwin
>>> medtwin.Regimen is medtwin.core.events.Regimen
True
>>> sorted(set(medtwin.__all__) - set(dir(medtwin)))
[]
"""

import os as _os

# OpenBLAS's own worker threads spin against JAX's and numba's on small machines: measured ~100x slower MPC
# steps (SLSQP's small dense solves) on 2 cores.  medtwin's dense algebra is small, so one BLAS thread is the
# fast choice; set before numpy loads, and a value the user set is kept (docs/decisions.md).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from medtwin._lazy import lazy_exports as _lazy_exports
from medtwin.errors import (
    DataError,
    DatasetError,
    MedtwinError,
    ModelError,
    ParameterError,
    SimulationError,
    WellPosednessError,
)

__version__ = "0.1.0"

#: Names loaded on first use (PEP 562): public name -> defining module.  Their modules cost seconds to import
#: (JAX, numpyro, arviz, pandas; the core's numba kernels ~0.5 s), so ``import medtwin`` loads only the errors
#: and a command-line process (``medtwin --help``) none of them.
_LAZY = {
    "PatientData": "medtwin.core.data",
    "PredictiveBand": "medtwin.core.data",
    "DoseEvent": "medtwin.core.events",
    "Regimen": "medtwin.core.events",
    "DoseTarget": "medtwin.core.model",
    "Model": "medtwin.core.model",
    "Output": "medtwin.core.model",
    "Parameter": "medtwin.core.model",
    "State": "medtwin.core.model",
    "check_well_posedness": "medtwin.core.model",
    "SolverSettings": "medtwin.core.simulate",
    "Trajectory": "medtwin.core.simulate",
    "simulate": "medtwin.core.simulate",
    "Status": "medtwin.core.status",
    "Measurement": "medtwin.core.stream",
    "Stream": "medtwin.core.stream",
    "get_model": "medtwin.models",
    "list_models": "medtwin.models",
    "model_reference": "medtwin.models",
    "resolve_model": "medtwin.models",
    "Population": "medtwin.core.population",
    "ResidualError": "medtwin.core.observation",
    "personalize": "medtwin.infer.personalize",
    "Posterior": "medtwin.infer.posterior",
    "probability": "medtwin.infer.posterior",
    "fit_focei": "medtwin.infer.foce",
    "Twin": "medtwin.twin",
    "recommend_dose": "medtwin.control.dosing",
    "AUC24Window": "medtwin.control.targets",
    "Threshold": "medtwin.control.targets",
    "DoseConstraints": "medtwin.control.dosing",
    "MPCController": "medtwin.control.mpc",
    "DoseOptimizer": "medtwin.control.policy",
    "RateConstraints": "medtwin.control.recommendation",
    "Recommendation": "medtwin.control.recommendation",
    "read_nonmem": "medtwin.io.nonmem",
    "load_population": "medtwin.io.population_file",
    "shipped_population_path": "medtwin.io.population_file",
    "load_twin": "medtwin.io.twin_file",
    "save_twin": "medtwin.io.twin_file",
}

__all__ = [
    "AUC24Window", "DataError", "DatasetError", "DoseConstraints", "DoseEvent", "DoseOptimizer", "DoseTarget",
    "MPCController", "Measurement", "MedtwinError", "Model", "ModelError", "Output", "Parameter",
    "ParameterError", "PatientData", "Population", "Posterior", "PredictiveBand", "RateConstraints",
    "Recommendation", "Regimen", "ResidualError", "SimulationError", "SolverSettings", "State", "Status",
    "Stream", "Trajectory", "Twin", "WellPosednessError", "check_well_posedness", "fit_focei", "get_model",
    "list_models", "load_population", "load_twin", "model_reference", "personalize", "probability", "read_nonmem",
    "recommend_dose", "resolve_model", "save_twin", "shipped_population_path", "simulate", "Threshold",
    "__version__",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
