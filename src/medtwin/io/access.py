"""The consent gate at the data edge: who may read or write which patients' data.

Every function in :mod:`medtwin.io` that reads or writes patient data takes a
required keyword ``access``: a strategy with one method ::

    access.authorize(patients, data_classes, operation) -> None

that returns when every (patient, data class) pair may be accessed and raises
a :class:`~medtwin.errors.ConsentError` otherwise, *before* any data are
returned or written.  Two strategies exist:

* :class:`medtwin.governance.consent_store.ConsentGate` -- the policy
  decision point on the stored FHIR Consents for one actor and purpose; every
  decision (permit or deny) is written to the audit log;
* :class:`OpenData` -- an explicit, named declaration that the data are not
  identifiable patient data (synthetic virtual patients, a published
  de-identified teaching dataset such as phenobarbital); nothing is checked.

There is deliberately no default: a caller must say which of the two applies.

Patient identifiers.  A NONMEM ``ID`` is a number; the patient id checked
against consents is its decimal text (``12.0`` -> ``"12"``), see
:func:`patient_ids`.  A :class:`ConsentGate` can map these to FHIR Patient ids.

Examples
--------
>>> OpenData("synthetic virtual patients").authorize(["1", "2"], ["observations"], "read")
>>> patient_ids([12.0, 3.0])
['12', '3']
>>> OpenData("")
Traceback (most recent call last):
...
medtwin.errors.DataError: OpenData needs a reason (why these data are not identifiable patient data)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from medtwin.errors import DataError

__all__ = ["DataAccess", "OpenData", "OPERATIONS", "authorize", "patient_ids"]

#: The operations an access is authorized for.
OPERATIONS = ("read", "write")


@runtime_checkable
class DataAccess(Protocol):
    """What :mod:`medtwin.io` asks before it reads or writes patient data."""

    def authorize(self, patients: Sequence[str], data_classes: Sequence[str], operation: str) -> None:
        """Return when allowed; raise :class:`~medtwin.errors.ConsentError` (no data touched) when not."""


@dataclass(frozen=True)
class OpenData:
    """Data that are not identifiable patient data: nothing to check.

    Parameters
    ----------
    reason : str
        Why, in words that stand in a review (e.g. ``"pharmpy's de-identified
        phenobarbital teaching dataset"``); must not be empty.
    """

    reason: str

    def __post_init__(self):
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise DataError("OpenData needs a reason (why these data are not identifiable patient data)")

    def authorize(self, patients: Sequence[str], data_classes: Sequence[str], operation: str) -> None:
        """Always allowed."""
        return None


def patient_ids(ids: Iterable) -> list[str]:
    """Dataset subject ids as patient-id text: integral numbers without ``.0``, text unchanged."""
    out = []
    for value in ids:
        if isinstance(value, str):
            out.append(value)
        elif float(value) == int(float(value)):
            out.append(str(int(float(value))))
        else:
            out.append(repr(float(value)))
    return out


def authorize(access, patients: Iterable, data_classes: Sequence[str], operation: str) -> None:
    """Validate *access* and ask it; the one call every reader and writer makes.

    Raises
    ------
    DataError
        *access* is missing or not a :class:`DataAccess`, or *operation* unknown.
    ConsentError
        Raised by the strategy when any patient's data may not be accessed.
    """
    if access is None or not isinstance(access, DataAccess):
        raise DataError("access must be a ConsentGate (patient data) or OpenData(reason) "
                        f"(data that are not identifiable), not {type(access).__name__}")
    if operation not in OPERATIONS:
        raise DataError(f"operation must be one of {OPERATIONS}, not {operation!r}")
    unique = list(dict.fromkeys(patient_ids(patients)))
    if unique and data_classes:
        access.authorize(unique, tuple(data_classes), operation)
