"""Hidden truth models for evaluation: virtual patients the twin was NOT built from.

Nothing here is a population the twin can load as a prior: the shipped priors live in
:mod:`medtwin.data.populations` (found by :func:`medtwin.io.population_file.shipped_population_path`);
these truth models are Python values, reached only through :func:`truth_model` / :data:`TRUTH_MODELS`
(or a population file a user passes explicitly with :class:`PopulationTruth`).

The interface (drug-agnostic, so glucose truth models can plug in later):

* a **truth model** has ``name``, ``citation``, ``drug`` and ``sample(n, seed) -> list[TruePatient]``;
* a **true patient** has ``id``, ``truth`` (the model's name), ``covariates`` (what the clinician knows,
  a dict of plain floats) and ``outputs(regimen, times) -> {output: (T,) array}``: the noise-free truth
  under any action history.  Measurement noise belongs to the scenario, not to the patient.

See :mod:`medtwin.scenarios.truth.vancomycin` for the vancomycin ones.
"""

from medtwin.scenarios.truth.vancomycin import (PopulationTruth, RevillaICU2010, RobertsICU2011, TruePatient,
                                                TRUTH_MODELS, sample_hospital_adults, truth_model)

__all__ = ["PopulationTruth", "RevillaICU2010", "RobertsICU2011", "TRUTH_MODELS", "TruePatient",
           "sample_hospital_adults", "truth_model"]
