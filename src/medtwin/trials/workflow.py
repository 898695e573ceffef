"""The recorded trial run: a request that :func:`medtwin.workflows.run` executes, signs and stores.

The workflow layer does not import this package (it sits below it): :class:`TrialRequest` implements the
generic hook — ``execute(access=..., progress=...)``, ``spec()`` and ``from_spec`` — and whoever reproduces
a trial passes ``requests={"trial": TrialRequest}`` to :func:`medtwin.workflows.reproduce_run` (the
``medtwin reproduce`` command does).  The stored spec holds the whole trial spec (patients and seed
included), so re-execution draws the same cohort and gives a bit-identical per-patient table.

Examples
--------
>>> from medtwin.trials.engine import PK_EXAMPLE
>>> from medtwin.trials.spec import TrialSpec
>>> request = TrialRequest(TrialSpec.from_dict(PK_EXAMPLE).with_patients(4))
>>> spec = request.spec()
>>> spec.operation, spec.model, TrialRequest.from_spec(spec, access=None).trial.patients
('trial', 'pk1_iv', 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medtwin.errors import DataError
from medtwin.governance import runs as _runs

__all__ = ["TrialRequest", "OPEN_DATA"]

#: Why a trial's data are not patient data (the consent gate's ``open_data`` reason).
OPEN_DATA = "virtual patients of an in-silico trial (synthetic cohort drawn from the spec's seed)"


@dataclass(frozen=True, eq=False)
class TrialRequest:
    """Run the trial ``trial`` (a TrialSpec); ``scheduler`` for the executor (not recorded: it does not change
    the result)."""

    trial: object
    scheduler: object = None
    purpose: str | None = None
    open_data: str | None = OPEN_DATA
    model: object = field(default=None)

    def __post_init__(self):
        from medtwin.models import get_model
        from medtwin.trials.arms import spec_truth

        if self.model is None:
            object.__setattr__(self, "model", get_model(spec_truth(self.trial).model))

    def execute(self, *, access=None, progress=None):
        """Run the trial (:func:`medtwin.trials.engine.run_trial`); returns a TrialResult."""
        from medtwin.trials.engine import run_trial

        return run_trial(self.trial, scheduler=self.scheduler, progress=progress)

    def spec(self) -> _runs.RunSpec:
        """The re-executable RunSpec (operation ``trial``): the whole trial spec as its input."""
        return _runs.RunSpec("trial", self.model.name, {"trial": dict(self.trial.data)},
                             seeds={"trial": int(self.trial.seed)}, open_data=self.open_data, purpose=self.purpose)

    @classmethod
    def from_spec(cls, spec: _runs.RunSpec, *, access=None) -> "TrialRequest":
        """The request a stored ``trial`` RunSpec describes."""
        from medtwin.trials.spec import TrialSpec

        if spec.operation != "trial" or "trial" not in spec.inputs:
            raise DataError(f"not a stored trial run (operation {spec.operation!r})")
        return cls(TrialSpec.from_dict(spec.inputs["trial"]), purpose=spec.purpose, open_data=spec.open_data)
