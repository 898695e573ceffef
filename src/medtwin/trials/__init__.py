"""In-silico trials: virtual cohorts run in chunks, in process or on Dask (:mod:`medtwin.trials.execution`)."""

from medtwin.trials.execution import map_patients
