"""Virtual cohorts and in-silico trials (a layer above :mod:`medtwin.scenarios`).

- :mod:`medtwin.trials.cohort`: correlated covariates from a Gaussian copula, inclusion criteria, θ draws;
- :mod:`medtwin.trials.spec`: the YAML trial spec; :mod:`medtwin.trials.arms`: arm policies;
  :mod:`medtwin.trials.endpoints`: endpoints from trajectories;
- :mod:`medtwin.trials.engine`: chunked execution into a per-patient table;
- :mod:`medtwin.trials.execution`: patients run in chunks, in process or on Dask (``scheduler="local"``, an
  address or a Client), per-patient random draws independent of chunking, retries;
- :mod:`medtwin.trials.analysis`: ATE with CIs, effects by pre-treatment strata only, CATE (EconML),
  forest plots; :mod:`medtwin.trials.workflow`: the recorded, reproducible ``trial`` run.
"""

from medtwin.trials.execution import map_patients

__all__ = ["map_patients"]
