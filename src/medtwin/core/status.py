"""Numerical status values: one per simulated patient, never an exception.

:class:`Status` is the simulation's outcome.  :class:`Vocabulary` is the base
of every other domain's status words (``medtwin.infer.status.FitStatus``,
``medtwin.assimilate.beliefs.UpdateStatus``,
``medtwin.control.status.RecommendationStatus``,
``medtwin.governance.runs.RunIntegrity``): str-valued enums, so a status
compares equal to its word, is written as the word in JSON, CSV, digests and
the CLI, and shows as the word in reprs.

Examples
--------
>>> Status(0).message
'ok'
>>> Status.MAX_STEPS.ok
False
>>> class Light(Vocabulary):
...     GREEN = "green"
>>> Light.GREEN == "green", Light("green"), repr(Light.GREEN), f"{Light.GREEN}"
(True, 'green', "'green'", 'green')
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Vocabulary(StrEnum):
    """One domain's status words: a str-valued enum whose members behave as their words everywhere.

    ``str``, ``format`` and ``repr`` give the word, so stored JSON, digests, CLI
    output and reprs of values holding a status are those of the plain string.
    """

    def __repr__(self) -> str:
        return repr(self.value)


class Status(IntEnum):
    """Outcome of one patient's simulation."""

    OK = 0
    MAX_STEPS = 1
    NON_FINITE = 2
    STEADY_STATE_NOT_CONVERGED = 3
    STEP_TOO_SMALL = 4
    SCHEDULE_OVERFLOW = 5

    @property
    def ok(self) -> bool:
        return self is Status.OK

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.OK: "ok",
    Status.MAX_STEPS: "the solver reached its maximum number of steps (raise max_steps or check stiffness)",
    Status.NON_FINITE: "the state became non-finite (NaN or inf); outputs from that point are NaN",
    Status.STEADY_STATE_NOT_CONVERGED: "steady state (SS) did not converge within the iteration limit",
    Status.STEP_TOO_SMALL: "the adaptive step size fell below machine precision",
    Status.SCHEDULE_OVERFLOW: "an SS infusion lasts more than 8 dosing intervals (overlapping infusions not supported)",
}
