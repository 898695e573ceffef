"""Numerical status values: one per simulated patient, never an exception.

Examples
--------
>>> Status(0).message
'ok'
>>> Status.MAX_STEPS.ok
False
"""

from __future__ import annotations

from enum import IntEnum


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
