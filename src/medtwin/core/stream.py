"""Clinical measurement streams as values: units, screening, duplicates (pure, no I/O).

Measurements reach a live twin irregularly, late, out of order, duplicated,
from devices with their own clocks and in units that may differ from the
model's (mg/dL vs mmol/L).  This module holds the *value layer*:

* :class:`Measurement` -- one reading as received (device clock, raw unit);
* :func:`convert` -- unit conversion with a documented table, refusing
  (:class:`~medtwin.errors.UnitError`) what it cannot convert;
* :func:`screen` -- drops exact duplicates idempotently, rejects with a reason
  what must never enter a belief (unknown output, corrupt or non-finite value
  or time, implausible value, unconvertible unit) and converts the rest to the
  model's unit, keeping the original value and unit;
* :class:`Stream` -- measurements in arrival order, the regimen of the inputs
  given in the stream, and the rows rejected on reading.

Aligning clocks, rewinding for late data and the observers live elsewhere
(:mod:`medtwin.assimilate`); reading and writing stream files in
:mod:`medtwin.io.stream_file`.

Unit table
----------
A unit is ``amount`` or ``amount/volume`` (concentration) or ``amount/time``
(rate) or ``volume[/time]``.  ``µ`` (micro sign or Greek mu) and ``u`` are the
same prefix, ``mcg`` = ``ug``, ``IU`` = ``U``.  Factors to the base unit:

==========================  ==================================================
kind (base)                 units
==========================  ==================================================
mass (mg)                   kg 1e6, g 1e3, mg 1, ug 1e-3, ng 1e-6, pg 1e-9
amount of substance (mmol)  mol 1e3, mmol 1, umol 1e-3, nmol 1e-6, pmol 1e-9
activity (mU; insulin)      U = IU 1e3, mU = mIU 1, uU = uIU 1e-3
volume (L)                  L 1, dL 0.1, mL 1e-3, uL 1e-6
time (h), rates only        h = hr 1, min 1/60, d 24
==========================  ==================================================

Hence mg/L = µg/mL = 1000 ng/mL = 1e-3 g/L, mg/dL = 10 mg/L, and
mU/L = µU/mL = mIU/L = µIU/mL.  Converting between mass, amount of substance
and activity needs ``substance`` (never guessed):

* molar mass, g/mol (= mg/mmol): glucose 180.156 (C6H12O6), so
  1 mmol/L = 18.0156 mg/dL; human insulin 5807.57 (C257H383N65O77S6);
  creatinine 113.12 (1 mg/dL = 88.4 µmol/L);
* insulin activity: 1 µIU/mL = 6.00 pmol/L (1 U = 6 nmol), the conventional
  factor (Vølund A, "Conversion of insulin units to SI units", Am J Clin Nutr
  1993;58:714-5; Knopp JL et al., "Insulin units and conversion factors: a
  story of truth, boots, and faster half-truths", J Diabetes Sci Technol
  2019;13:597-600).

Identical unit strings are always convertible (factor 1), even when not in the
table (e.g. a model output in ``"%"``).  Volume never converts to an amount
(``mL/h`` of an infusion is refused: the concentration of the bag is unknown).

Examples
--------
>>> round(convert(90.0, "mg/dL", "mmol/L", substance="glucose"), 4)
4.9957
>>> convert(10.0, "µIU/mL", "pmol/L", substance="insulin")
60.0
>>> convert(2.0, "mL/h", "mg/h")
Traceback (most recent call last):
...
medtwin.errors.UnitError: cannot convert 'mL/h' (volume rate) to 'mg/h' (mass rate): different quantities
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, NamedTuple

from medtwin.core.events import Regimen
from medtwin.errors import DataError, UnitError

__all__ = [
    "MOLAR_MASS", "INSULIN_PMOL_PER_MU", "Measurement", "Rejection", "ScreenResult", "Stream", "convert",
    "quantity", "screen",
]

#: Molar masses, g/mol (= mg/mmol), of the substances mass <-> molar conversion knows.
MOLAR_MASS: Mapping[str, float] = {"glucose": 180.156, "insulin": 5807.57, "creatinine": 113.12}

#: pmol of insulin per mU (1 µIU/mL = 6.00 pmol/L; Vølund 1993, Knopp et al. 2019).
INSULIN_PMOL_PER_MU = 6.00

_AMOUNTS = {
    "mass": {"kg": 1e6, "g": 1e3, "mg": 1.0, "ug": 1e-3, "ng": 1e-6, "pg": 1e-9},
    "molar": {"mol": 1e3, "mmol": 1.0, "umol": 1e-3, "nmol": 1e-6, "pmol": 1e-9},
    "activity": {"U": 1e3, "IU": 1e3, "mU": 1.0, "mIU": 1.0, "uU": 1e-3, "uIU": 1e-3},
    "volume": {"L": 1.0, "l": 1.0, "dL": 0.1, "dl": 0.1, "mL": 1e-3, "ml": 1e-3, "uL": 1e-6, "ul": 1e-6},
}
_VOLUMES = _AMOUNTS["volume"]
_TIMES = {"h": 1.0, "hr": 1.0, "min": 1.0 / 60.0, "d": 24.0}
_KIND_NAMES = {"mass": "mass", "molar": "amount of substance", "activity": "activity", "volume": "volume"}


class _Unit(NamedTuple):
    kind: str          # mass, molar, activity, volume
    per: str | None    # None, "volume", "time"
    factor: float      # to mg | mmol | mU | L, per L | per h


def _normalize(unit: str) -> str:
    return unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").replace("mcg", "ug").replace(" ", "")


def _known_units() -> list[str]:
    return sorted({u for table in _AMOUNTS.values() for u in table})


def _parse(unit: Any, context: str) -> _Unit:
    if not isinstance(unit, str):
        raise UnitError(f"unit must be text, got {unit!r} ({context})")
    text = _normalize(unit)
    numerator, _, denominator = text.partition("/")
    kind = next((k for k, table in _AMOUNTS.items() if numerator in table), None)
    per, per_factor = None, 1.0
    if denominator in _VOLUMES and kind != "volume":
        per, per_factor = "volume", _VOLUMES[denominator]
    elif denominator in _TIMES:
        per, per_factor = "time", _TIMES[denominator]
    if kind is None or (denominator and per is None):
        raise UnitError(f"unknown unit {unit!r} ({context}); amounts: {_known_units()}, "
                        f"optionally per volume {sorted(_VOLUMES)} or per time {sorted(_TIMES)}")
    return _Unit(kind, per, _AMOUNTS[kind][numerator] / per_factor)


def _name(u: _Unit) -> str:
    base = _KIND_NAMES[u.kind]
    if u.per == "volume":
        return {"mass": "mass concentration", "molar": "molar concentration",
                "activity": "activity concentration"}[u.kind]
    return base + " rate" if u.per == "time" else base


def quantity(unit: str) -> str:
    """The quantity a unit measures (``"mass concentration"``, ``"activity rate"`` ...).

    Raises
    ------
    UnitError
        The unit is not in the table (see the module docstring).

    Examples
    --------
    >>> quantity("mg/dL"), quantity("U/h"), quantity("mmol")
    ('mass concentration', 'activity rate', 'amount of substance')
    """
    return _name(_parse(unit, f"quantity of {unit!r}"))


def _to_mmol(kind: str, value: float, substance: str) -> float:
    """Base amount (mg, mmol or mU) of ``substance`` -> mmol."""
    if kind == "mass":
        return value / MOLAR_MASS[substance]
    if kind == "activity":
        return value * INSULIN_PMOL_PER_MU * 1e-9
    return value


def _from_mmol(kind: str, value: float, substance: str) -> float:
    if kind == "mass":
        return value * MOLAR_MASS[substance]
    if kind == "activity":
        return value / (INSULIN_PMOL_PER_MU * 1e-9)
    return value


def convert(value: float, from_unit: str, to_unit: str, *, substance: str | None = None) -> float:
    """Convert ``value`` from ``from_unit`` to ``to_unit`` (see the table in the module docstring).

    Parameters
    ----------
    value : float
        The number in ``from_unit``.
    from_unit, to_unit : str
        Units from the table, e.g. ``"mg/dL"``, ``"mmol/L"``, ``"µIU/mL"``, ``"U/h"``.
    substance : str, optional
        Needed to convert between mass, amount of substance and activity: a key
        of :data:`MOLAR_MASS` (activity units: ``"insulin"`` only).

    Returns
    -------
    float
        The value in ``to_unit``, rounded to 15 significant digits (float
        noise of the prefix factors removed; far below any measurement precision).

    Raises
    ------
    UnitError
        A unit is unknown, the units measure different quantities, or the
        conversion needs a substance that is missing or unknown; the message
        names both units and their quantities.

    Examples
    --------
    >>> convert(5.0, "mmol/L", "mg/dL", substance="glucose")
    90.078
    >>> convert(2.5, "U", "mU"), convert(1.0, "mg/dL", "mg/L"), convert(1.0, "ug/mL", "ng/mL")
    (2500.0, 10.0, 1000.0)
    >>> convert(90.0, "mg/dL", "mmol/L")
    Traceback (most recent call last):
    ...
    medtwin.errors.UnitError: converting 'mg/dL' (mass concentration) to 'mmol/L' (molar concentration) needs a substance; known: ['creatinine', 'glucose', 'insulin']
    """
    if from_unit == to_unit and isinstance(from_unit, str):
        return float(value)
    context = f"converting {from_unit!r} to {to_unit!r}"
    a, b = _parse(from_unit, context), _parse(to_unit, context)
    if a.per != b.per or (a.kind != b.kind and "volume" in (a.kind, b.kind)):
        raise UnitError(f"cannot convert {from_unit!r} ({_name(a)}) to {to_unit!r} ({_name(b)}): different quantities")
    base = float(value) * a.factor
    if a.kind == b.kind:
        return _tidy(base / b.factor)
    what = f"converting {from_unit!r} ({_name(a)}) to {to_unit!r} ({_name(b)})"
    if substance is None:
        raise UnitError(f"{what} needs a substance; known: {sorted(MOLAR_MASS)}")
    if substance not in MOLAR_MASS:
        raise UnitError(f"{what}: unknown substance {substance!r}; known: {sorted(MOLAR_MASS)}")
    if "activity" in (a.kind, b.kind) and substance != "insulin":
        raise UnitError(f"{what}: activity units (U) are defined here for insulin only, not {substance!r}")
    return _tidy(_from_mmol(b.kind, _to_mmol(a.kind, base, substance), substance) / b.factor)


def _tidy(x: float) -> float:
    """Round to 15 significant digits: exact table factors give exact results (60.0, not 60.00000000000001)."""
    return float(f"{x:.15g}") if math.isfinite(x) else x


# ---------------------------------------------------------------------------- values
def _key_number(value: Any) -> Any:
    """A number as a hashable key part: floats compare by value, NaN by its text, text as is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if math.isnan(number) else number


@dataclass(frozen=True)
class Measurement:
    """One measurement as received.

    Attributes
    ----------
    time : float
        Sampling time, h, on the *device* clock (not yet aligned).
    output : str
        Model output name (e.g. ``"G"``, ``"C"``).
    value : float
        The value in ``unit`` (may be corrupt on arrival: :func:`screen` rejects it).
    unit : str
        The unit as received (after :func:`screen`: the model's unit).
    device : str
        Source device or system (``"lab"`` by default); each device has its own clock.
    source_id : str
        The sender's identifier of the reading (accession number, message id).
    under_advice : bool
        True when taken while the twin's own recommendation was being followed
        (used by feedback-loop alarms).
    original_value, original_unit : float, str, optional
        Value and unit as received, set by :func:`screen` when it converted.

    Examples
    --------
    >>> m = Measurement(1.5, "G", 90.0, "mg/dL", device="poc")
    >>> m.key()
    ('poc', 1.5, 'G', 90.0, 'mg/dL', '')
    """

    time: float
    output: str
    value: float
    unit: str
    device: str = "lab"
    source_id: str = ""
    under_advice: bool = False
    original_value: float | None = None
    original_unit: str | None = None

    def key(self) -> tuple:
        """Identity for exact-duplicate detection: (device, time, output, value, unit, source_id).

        Value and unit are those *as received* (``original_*`` when set), so a
        screened (converted) measurement has the key of the raw one.  NaN
        values compare equal here (their key holds ``"nan"``).
        """
        raw = self.original_unit is not None
        value = self.original_value if raw else self.value
        unit = self.original_unit if raw else self.unit
        return (self.device, _key_number(self.time), self.output, _key_number(value), unit, self.source_id)


@dataclass(frozen=True)
class Rejection:
    """Something that must not enter a belief, with the reason.

    Attributes
    ----------
    item : Measurement or mapping
        The rejected measurement, or the raw file row (column -> cell text).
    reason : str
        Why, in words fit for a clinician's log.
    row : int, optional
        1-based data row of the file it came from (header excluded).
    """

    item: Any
    reason: str
    row: int | None = None


@dataclass(frozen=True)
class ScreenResult:
    """What :func:`screen` made of a batch.

    Attributes
    ----------
    accepted : tuple of Measurement
        In input order, in the model's unit (``original_value``/``original_unit``
        kept when converted); time and value as floats.
    rejected : tuple of Rejection
        In input order, each with its reason.
    duplicates : tuple of Measurement
        Exact duplicates dropped (of an earlier one in the batch or of ``seen_keys``).
    seen_keys : frozenset
        ``seen_keys`` given plus the keys of every measurement screened here
        (accepted or rejected): pass it to the next call.
    """

    accepted: tuple[Measurement, ...]
    rejected: tuple[Rejection, ...]
    duplicates: tuple[Measurement, ...]
    seen_keys: frozenset

    @property
    def n_duplicates(self) -> int:
        """Number of exact duplicates dropped."""
        return len(self.duplicates)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _screen_one(m: Measurement, output_units, substances, plausible) -> Measurement | str:
    """The accepted, converted measurement, or the reason to reject it."""
    if m.output not in output_units:
        return f"unknown output {m.output!r}; the model observes {sorted(output_units)}"
    time = _number(m.time)
    if time is None or not math.isfinite(time) or time < 0:
        return f"time {m.time!r} h is not a finite number >= 0"
    value = _number(m.value)
    if value is None:
        return f"non-numeric value {m.value!r}"
    if not math.isfinite(value):
        return f"non-finite value {m.value!r} {m.unit}"
    target = output_units[m.output]
    try:
        converted = convert(value, m.unit, target, substance=substances.get(m.output))
    except UnitError as exc:
        return f"unit not convertible: {exc}"
    if not math.isfinite(converted):
        return f"value {value!r} {m.unit} overflows when converted to {target}"
    received = "" if m.unit == target else f" (received {value:g} {m.unit})"
    lo, hi = plausible.get(m.output, (0.0, math.inf))
    if converted < 0 <= lo:
        return f"negative value {converted:g} {target}{received} for output {m.output}"
    if not lo <= converted <= hi:
        return (f"implausible value {converted:g} {target}{received} for output {m.output}: "
                f"outside the plausible range [{lo:g}, {hi:g}] {target}")
    if m.unit == target:
        return replace(m, time=time, value=converted)
    first = m.original_unit is None
    return replace(m, time=time, value=converted, unit=target,
                   original_value=value if first else m.original_value,
                   original_unit=m.unit if first else m.original_unit)


def screen(measurements: Iterable[Measurement], output_units: Mapping[str, str], *,
           substances: Mapping[str, str] | None = None,
           plausible: Mapping[str, tuple[float, float]] | None = None,
           seen_keys: frozenset = frozenset()) -> ScreenResult:
    """Drop duplicates, reject what must not enter a belief, convert the rest to the model's units.

    Parameters
    ----------
    measurements : iterable of Measurement
        A batch in arrival order.
    output_units : mapping
        Model output name -> its unit (e.g. ``{"G": "mmol/L"}``); other outputs are rejected.
    substances : mapping, optional
        Output name -> substance (key of :data:`MOLAR_MASS`) for mass/molar/activity
        conversion, e.g. ``{"G": "glucose", "I": "insulin"}``.
    plausible : mapping, optional
        Output name -> (low, high) plausible range in the model's unit, inclusive.
        Negative values are refused unless the range's low end is negative.
    seen_keys : frozenset
        Keys (:meth:`Measurement.key`) already screened: their measurements are
        exact duplicates.

    Returns
    -------
    ScreenResult
        Reasons of rejection: unknown output, time not finite or negative,
        non-numeric or non-finite value, unit not convertible (quoting the
        :class:`~medtwin.errors.UnitError`), negative or implausible value.
        Exact duplicates are dropped (not rejected); screening the same batch
        again with the returned ``seen_keys`` accepts nothing (idempotence).

    Raises
    ------
    DataError
        An item is not a :class:`Measurement`.

    Examples
    --------
    >>> batch = [Measurement(1.0, "G", 90.0, "mg/dL"), Measurement(1.0, "G", 90.0, "mg/dL"),
    ...          Measurement(2.0, "G", float("nan"), "mmol/L")]
    >>> r = screen(batch, {"G": "mmol/L"}, substances={"G": "glucose"})
    >>> [(round(m.value, 3), m.unit, m.original_unit) for m in r.accepted], r.n_duplicates
    ([(4.996, 'mmol/L', 'mg/dL')], 1)
    >>> r.rejected[0].reason
    'non-finite value nan mmol/L'
    >>> screen(batch, {"G": "mmol/L"}, substances={"G": "glucose"}, seen_keys=r.seen_keys).accepted
    ()
    """
    substances = dict(substances or {})
    plausible = dict(plausible or {})
    seen = set(seen_keys)
    accepted, rejected, duplicates = [], [], []
    for m in measurements:
        if not isinstance(m, Measurement):
            raise DataError(f"screen expects Measurement values, got {type(m).__name__}")
        key = m.key()
        if key in seen:
            duplicates.append(m)
            continue
        seen.add(key)
        outcome = _screen_one(m, output_units, substances, plausible)
        if isinstance(outcome, str):
            rejected.append(Rejection(m, outcome))
        else:
            accepted.append(outcome)
    return ScreenResult(tuple(accepted), tuple(rejected), tuple(duplicates), frozenset(seen))


@dataclass(frozen=True)
class Stream:
    """A recorded or live stream: measurements in arrival order, the inputs given, what was rejected.

    Attributes
    ----------
    measurements : tuple of Measurement
        In arrival order (as given; not sorted by time, not screened).
    regimen : Regimen
        The inputs (boluses, infusions) recorded in the stream, model units.
    rejected : tuple of Rejection
        Rows refused on reading (corrupt values, unknown kind, output or dose
        target), with row numbers and reasons; the other rows proceed.
    patient : str, optional
        The patient the stream belongs to (checked against consents by the readers/writers).
    duplicates : tuple of Rejection
        Dose rows dropped on reading as exact duplicates of an earlier row (same
        time, kind, target, amount or rate, duration, device and source_id), with
        row numbers and the row they repeat: a re-sent row is one dose, not two.

    Examples
    --------
    >>> s = Stream((Measurement(2.0, "G", 6.0, "mmol/L", device="cgm"), Measurement(1.0, "G", 5.5, "mmol/L")))
    >>> [m.time for m in s.sorted_by_time()], {d: len(ms) for d, ms in s.by_device().items()}
    ([1.0, 2.0], {'cgm': 1, 'lab': 1})
    """

    measurements: tuple[Measurement, ...] = ()
    regimen: Regimen = field(default_factory=Regimen)
    rejected: tuple[Rejection, ...] = ()
    patient: str | None = None
    duplicates: tuple[Rejection, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "rejected", tuple(self.rejected))
        object.__setattr__(self, "duplicates", tuple(self.duplicates))
        for m in self.measurements:
            if not isinstance(m, Measurement):
                raise DataError(f"a Stream holds Measurement values, got {type(m).__name__}")
        if not isinstance(self.regimen, Regimen):
            raise DataError(f"a Stream's regimen must be a Regimen, got {type(self.regimen).__name__}")

    def by_device(self) -> dict[str, tuple[Measurement, ...]]:
        """Device -> its measurements in arrival order (devices in order of first arrival)."""
        out: dict[str, list[Measurement]] = {}
        for m in self.measurements:
            out.setdefault(m.device, []).append(m)
        return {device: tuple(ms) for device, ms in out.items()}

    def sorted_by_time(self) -> tuple[Measurement, ...]:
        """Measurements by device-clock time (stable: arrival order among equal times)."""
        return tuple(sorted(self.measurements, key=_time_order))


def _time_order(m: Measurement) -> float:
    """Sort key: the time, with unreadable or NaN times last."""
    time = _number(m.time)
    return math.inf if time is None or math.isnan(time) else time
