"""A live twin saved to and loaded from a JSON file, behind the consent gate.

The file holds :func:`medtwin.twin.codec.twin_to_dict`: a twin
loaded from it continues bit for bit where the saved one stopped.  A twin holds
a patient's measurements and doses, so both directions need ``access`` (see
:mod:`medtwin.io.access`); a twin without a patient id can only be written or
read under :class:`~medtwin.io.access.OpenData`.

Examples
--------
>>> import tempfile, pathlib
>>> from medtwin.twin.codec import twin_from_spec
>>> from medtwin.io.access import OpenData
>>> twin = twin_from_spec({"model": "pk1_iv", "errors": {"C": {"model": "additive", "additive": 0.5}}})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "twin.json"
>>> save_twin(path, twin, access=OpenData("doctest: no patient"))
>>> load_twin(path, access=OpenData("doctest: no patient")).belief.mean.tolist() == twin.belief.mean.tolist()
True
"""

from __future__ import annotations

import json
from pathlib import Path

from medtwin.twin.codec import twin_from_dict, twin_to_dict
from medtwin.errors import DataError
from medtwin.io.access import OpenData, authorize

DATA_CLASSES = ("observations", "medications")


def _patients(patient, access) -> list[str]:
    if patient is None and not isinstance(access, OpenData):
        raise DataError("this twin has no patient id, so consent cannot be checked: give the twin a patient, "
                        "or declare OpenData(reason) for non-identifiable data")
    return [] if patient is None else [str(patient)]


def save_twin(path, twin, *, access) -> None:
    """Write ``twin`` to ``path`` (JSON) after checking ``access`` for writing its patient's data."""
    authorize(access, _patients(twin.patient, access), DATA_CLASSES, "write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(twin_to_dict(twin)))


def load_twin(path, *, access, model=None):
    """Read a twin saved by :func:`save_twin` after checking ``access`` for reading its patient's data.

    ``model``: the Model object of a twin built on a user-defined model (the library resolves the others by
    name); its digest must equal the stored one (ModelError otherwise).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable twin file ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a twin file")
    authorize(access, _patients(data.get("patient"), access), DATA_CLASSES, "read")
    return twin_from_dict(data, model=model)
