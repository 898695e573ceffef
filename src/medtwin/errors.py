"""The exception tree of medtwin.

Every error medtwin raises on purpose derives from :class:`MedtwinError`, so a
caller can catch the whole family in one place::

    MedtwinError
    ├── DataError            bad input data (a dataset, a regimen, a parameter table)
    │   ├── DatasetError     a NONMEM-style dataset row/column is invalid (names both)
    │   ├── UnitError        a unit is unknown or cannot be converted (names both units and the quantity)
    │   └── PostRandomisationError   a trial stratum is a post-randomisation variable (names it and why)
    ├── ModelError           a model definition is inconsistent
    │   ├── ModelDigestError     a stored value's model digest differs from the model given (also a DataError)
    │   ├── WellPosednessError   the vector field is non-finite or explodes on the domain
    │   ├── PopulationError      a population model is inconsistent (names the field)
    │   └── AdjustmentError      a causal adjustment the graph forbids (post-treatment or collider; names variable and path)
    ├── ParameterError       parameter values missing, unknown or outside their bounds
    ├── SimulationError      the simulation request itself is invalid
    ├── EstimationError      an estimation request cannot be run (no observations, unsupported feature)
    └── ConsentError         access to patient data denied by the consent policy

Numerical failure of one patient during a batched simulation is *not* an
exception: it is reported as a :class:`medtwin.core.status.Status` value per
patient, so that one failed virtual patient cannot abort a trial.
"""

from __future__ import annotations


class MedtwinError(Exception):
    """Root of every error raised deliberately by medtwin."""


class DataError(MedtwinError, ValueError):
    """Input data are invalid."""


class DatasetError(DataError):
    """One cell or record of a NONMEM-style dataset is invalid.

    Parameters
    ----------
    message : str
        Why the record is invalid.
    row : int, optional
        1-based data row number in the file (header excluded).
    column : str, optional
        Name of the offending column.
    """

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class UnitError(DataError):
    """A unit is unknown, or two units measure different quantities (names both units and the quantity)."""


class ModelError(MedtwinError, ValueError):
    """A model definition is inconsistent."""


class ModelDigestError(ModelError, DataError):
    """A stored value (twin, posterior, run) names a model whose definition differs from the one at hand.

    Both a model error and a data error: the stored data cannot be continued on this model.
    """


class WellPosednessError(ModelError):
    """The vector field is non-finite or its Jacobian explodes on the parameter domain."""

    def __init__(self, message: str, report=None):
        self.report = report
        super().__init__(message)


class PopulationError(ModelError):
    """A population model (typical values, covariate effects, Ω, residual error) is inconsistent.

    The message starts with the offending field, e.g. ``"omega: ..."``.
    """


class AdjustmentError(ModelError):
    """Adjusting for these variables would bias the causal effect the graph identifies.

    Raised by :mod:`medtwin.causal` for a descendant of the treatment (a mediator or other post-treatment
    variable), an unobserved variable, or a collider whose conditioning opens a non-causal path; the message
    names the offending variable and the path (e.g. ``qsmk -> weight82 -> y``).
    """


class ParameterError(MedtwinError, ValueError):
    """Parameter values are missing, unknown, non-finite or outside their bounds."""


class SimulationError(MedtwinError, ValueError):
    """A simulation request is invalid (not a numerical failure: see Status)."""


class EstimationError(MedtwinError, ValueError):
    """An estimation request cannot be run (a numerical failure is a status of the result instead)."""


class ConsentError(MedtwinError, PermissionError):
    """Access to patient data was denied by the consent policy."""


class PostRandomisationError(DataError):
    """A subgroup or adjustment variable of a trial is measured after randomisation (an endpoint, an exposure):
    stratifying on it breaks randomisation.  ``variable`` names it; the message says why."""

    def __init__(self, message: str, *, variable: str | None = None):
        self.variable = variable
        super().__init__(message)
