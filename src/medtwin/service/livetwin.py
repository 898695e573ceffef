"""Each patient's stored twin, kept current with the patient's records exactly as ``Twin.assimilate`` does.

A twin is created for a patient (``POST /patients/{id}/twin``) either

* **live** (``kind="live"``): an observer twin from a specification (``spec`` mapping, or ``name`` of a shipped
  one: ``icu_glucose``, :func:`medtwin.scenarios.icu.icu_twin_spec`), built with
  :func:`medtwin.twin.codec.twin_from_spec`; or
* **posterior** (``kind="posterior"``): a treatment twin on the patient's personalized posterior for a
  population (``population``: a shipped name such as ``vancomycin_goti2018``; ``covariates``), personalized
  through :func:`medtwin.workflows.run` (a recorded, signed ``personalize`` run, the acting user as operator).

The stored row holds the specification, the twin (:func:`~medtwin.twin.codec.twin_to_dict`) and
``last_record``, the highest ``clinical_records.id`` the twin has seen.  :meth:`LiveTwins.catch_up` feeds every
newer record of the patient to the twin -- doses as new ``inputs`` (converted by the stream reader,
:func:`medtwin.io.stream_file.read_stream`), measurements as :class:`~medtwin.core.stream.Measurement` values --
in one ``twin.assimilate(measurements, inputs)`` call, which sorts late and out-of-order readings into place
(rewinding to a checkpoint) and drops exact re-sends; then the row is saved.  Records are the truth, the twin a
derived value: after a crash the first catch-up replays what the twin had not seen yet.

A per-patient lock serialises catch-ups; the latest twin is cached in memory (with the row's version, so a
second process writing the same database is noticed).
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass

import sqlalchemy as sa

from medtwin.errors import DataError
from medtwin.io.service_tables import twins_table
from medtwin.service.store import RecordStore, now_iso, write_transaction

__all__ = ["LiveTwins", "Services", "TwinUpdate", "records_stream", "twin_summary"]

_CSV_COLUMNS = ("time_h", "kind", "name", "value", "unit", "duration_h", "device", "source_id", "under_advice")


def records_stream(records: list[dict], model, access, patient: str):
    """The :class:`~medtwin.core.stream.Stream` of stored records (read by the stream-file reader).

    Doses are converted to model units exactly as a stream file's dose rows are; a row that is not for this
    model becomes a rejection, as in a file.
    """
    import csv

    from medtwin.io.stream_file import read_stream

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for r in records:
        writer.writerow([repr(float(r["time_h"])), r["kind"], r["name"], repr(float(r["value"])), r["unit"],
                         "" if r.get("duration_h") is None else repr(float(r["duration_h"])), r["device"],
                         r["source_id"], int(bool(r["under_advice"]))])
    buffer.seek(0)
    try:
        return read_stream(buffer, model=model, access=access, patient=patient)
    except DataError as exc:  # name the stored record, not the row of this internal CSV
        import re

        match = re.match(r"row (\d+)", str(exc))
        if match is None or not 1 <= int(match.group(1)) <= len(records):
            raise
        sid = records[int(match.group(1)) - 1]["source_id"]
        raise DataError(f"record source_id={sid!r}{str(exc)[match.end():]}") from None


def _measurements(records: list[dict]):
    from medtwin.core.stream import Measurement

    return [Measurement(float(r["time_h"]), r["name"], float(r["value"]), r["unit"], device=r["device"],
                        source_id=r["source_id"], under_advice=bool(r["under_advice"]))
            for r in records if r["kind"] == "obs"]


def twin_summary(twin) -> dict:
    """What a dashboard shows of a twin now: time, states and parameters with 90 % bands, outputs, alarms."""
    out: dict = {"time_h": float(twin.time), "model": twin.model.name, "kind": "live" if twin.belief is not None
                 else "posterior", "n_measurements": len(twin.history), "n_rejected": len(twin.rejected),
                 "alarms": [{"kind": a.kind, "time_h": float(a.time), "message": a.message} for a in twin.alarms]}
    if twin.belief is not None:
        state = twin.state()
        out.update(states=dict(state.states), parameters=dict(state.parameters), units=dict(state.units))
        outputs = {}
        for name in twin.errors:
            p05, mean, p95 = twin.output_band(name)
            outputs[name] = {"mean": float(mean), "p05": float(p05), "p95": float(p95),
                             "unit": twin.model.output(name).unit}
        out["outputs"] = outputs
    else:
        table = twin.posterior.summary(n=1000)
        out["parameters"] = {r["parameter"]: {"median": float(r["median"]), "p05": float(r["p05"]),
                                              "p95": float(r["p95"])} for r in table.to_dict("records")}
        out["units"] = {r["parameter"]: r["unit"] for r in table.to_dict("records")}
    return out


@dataclass(frozen=True)
class TwinUpdate:
    """The outcome of a catch-up: the twin, its summary, the alarms that are new, how many records it took."""

    twin: object
    summary: dict
    new_alarms: tuple
    n_records: int
    version: int


class LiveTwins:
    """The stored twins of the patients (``stored_twins``), cached, updated from the records."""

    def __init__(self, engine, records: RecordStore):
        self.engine = engine
        self.records = records
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache: dict[str, tuple[int, object]] = {}

    def lock(self, patient: str) -> threading.Lock:
        """The patient's lock (catch-ups of one patient run one at a time)."""
        with self._guard:
            return self._locks.setdefault(patient, threading.Lock())

    def row(self, patient: str) -> dict | None:
        """The stored row (spec parsed, state left as text), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(twins_table).where(twins_table.c.patient == patient)).mappings().first()
        if row is None:
            return None
        row = dict(row)
        row["spec"] = json.loads(row["spec"])
        return row

    def _load(self, row: dict):
        from medtwin.twin.codec import twin_from_dict

        cached = self._cache.get(row["patient"])
        if cached is not None and cached[0] == row["version"]:
            return cached[1]
        twin = twin_from_dict(json.loads(row["state"]))
        self._cache[row["patient"]] = (row["version"], twin)
        return twin

    def _save(self, patient: str, twin, *, version: int, last_record: int, name: str | None = None,
              spec: dict | None = None) -> int:
        from medtwin.twin.codec import twin_to_dict

        state = json.dumps(twin_to_dict(twin))
        with write_transaction(self.engine) as conn:
            if version == 0:
                conn.execute(twins_table.delete().where(twins_table.c.patient == patient))
                conn.execute(twins_table.insert().values(patient=patient, name=name, spec=json.dumps(spec),
                                                         state=state, version=1, last_record=last_record,
                                                         updated_at=now_iso()))
            else:
                done = conn.execute(twins_table.update().where(twins_table.c.patient == patient,
                                                               twins_table.c.version == version)
                                    .values(state=state, version=version + 1, last_record=last_record,
                                            updated_at=now_iso())).rowcount
                if done != 1:
                    raise DataError(f"twin of patient {patient!r} was changed by another writer; retry")
        self._cache[patient] = (version + 1, twin)
        return version + 1

    def get(self, patient: str, access):
        """(twin, row) of *patient* after catching up with its records, or (None, None) without a twin."""
        update = self.catch_up(patient, access)
        if update is None:
            return None, None
        return update.twin, self.row(patient)

    def create(self, patient: str, request: dict, *, access, stores=None, actor: str = "") -> TwinUpdate:
        """Build *patient*'s twin from *request* (see the module docstring) on every stored record; replace any
        existing twin."""
        kind = request.get("kind", "live")
        with self.lock(patient):
            records = self.records.list(patient)
            if kind == "live":
                twin, name, spec = self._new_live(patient, request, records, access)
            elif kind == "posterior":
                twin, name, spec = self._new_posterior(patient, request, records, access, stores, actor)
            else:
                raise DataError(f"kind: must be live or posterior, not {kind!r}")
            last = max((r["id"] for r in records), default=0)
            version = self._save(patient, twin, version=0, last_record=last, name=name, spec=spec)
        return TwinUpdate(twin, twin_summary(twin), tuple(twin.alarms), len(records), version)

    def _new_live(self, patient, request, records, access):
        from medtwin.models import get_model
        from medtwin.twin.codec import twin_from_spec

        spec = request.get("spec")
        name = request.get("name")
        if spec is None:
            if name not in (None, "icu_glucose"):
                raise DataError(f"name: unknown shipped twin {name!r} (shipped: icu_glucose); or give spec")
            from medtwin.scenarios.icu import icu_twin_spec

            spec, name = icu_twin_spec(), "icu_glucose"
        if not isinstance(spec, dict) or "model" not in spec:
            raise DataError("spec: a twin specification is a mapping with at least 'model' and 'errors'")
        model = get_model(str(spec["model"]))
        stream = records_stream(records, model, access, patient)
        twin = twin_from_spec(spec, inputs=stream.regimen, patient=patient, model=model)
        measurements = list(stream.measurements)
        if measurements:
            twin = twin.assimilate(measurements)
        return twin, name or str(spec["model"]), {"kind": "live", "spec": spec}

    def _new_posterior(self, patient, request, records, access, stores, actor):
        import numpy as np

        from medtwin import workflows
        from medtwin.core.data import PatientData
        from medtwin.io.population_file import load_population, shipped_population_path
        from medtwin.twin import Twin

        name = request.get("population")
        if not isinstance(name, str) or not name:
            raise DataError("population: the name of a shipped population file (e.g. vancomycin_goti2018)")
        population = load_population(shipped_population_path(name))
        covariates = {str(k): float(v) for k, v in (request.get("covariates") or {}).items()}
        stream = records_stream(records, _population_model(population), access, patient)
        output = population.residual.output
        levels = sorted((m for m in stream.measurements if m.output == output), key=lambda m: m.time)
        if not levels:
            raise DataError(f"records: patient {patient!r} has no {output} level to personalize on")
        dose_times = stream.regimen.jump_times() if len(stream.regimen) else np.array([])
        data = PatientData(stream.regimen, [m.time for m in levels], [m.value for m in levels], covariates, output,
                           pre_dose=[bool(np.any(np.abs(dose_times - m.time) < 1e-9)) for m in levels],
                           patient=patient)
        purpose = getattr(access, "purpose", "treatment")
        posterior, record = workflows.run(workflows.PersonalizeRequest(population, data, purpose=purpose,
                                                                       method=request.get("method", "laplace")),
                                          stores, actor=actor)
        twin = Twin.from_posterior(posterior, inputs=stream.regimen, patient=patient)
        twin = _seen(twin, levels)
        spec = {"kind": "posterior", "population": name, "covariates": covariates, "run_id": record.run_id}
        return twin, name, spec

    def catch_up(self, patient: str, access) -> TwinUpdate | None:
        """Feed the records the twin has not seen to it (one ``assimilate`` call) and save it; None without a
        twin."""
        with self.lock(patient):
            row = self.row(patient)
            if row is None:
                return None
            twin = self._load(row)
            new = self.records.list(patient, after_id=row["last_record"])
            if not new:
                return TwinUpdate(twin, twin_summary(twin), (), 0, row["version"])
            before = {(a.kind, a.time) for a in twin.alarms}
            doses = [r for r in new if r["kind"] != "obs"]
            inputs = records_stream(doses, twin.model, access, patient).regimen if doses else None
            twin = twin.assimilate(_measurements(new), inputs=inputs if inputs is not None and len(inputs) else None)
            version = self._save(patient, twin, version=row["version"], last_record=max(r["id"] for r in new))
        fresh = tuple(a for a in twin.alarms if (a.kind, a.time) not in before)
        return TwinUpdate(twin, twin_summary(twin), fresh, len(new), version)


def _population_model(population):
    from medtwin.models import get_model

    return get_model(population.model)


def _seen(twin, levels):
    """The posterior twin with the levels it was personalized on marked as seen (a re-send is then a duplicate)."""
    from dataclasses import replace

    from medtwin.core.stream import screen

    units = {levels[0].output: twin.model.output(levels[0].output).unit}
    result = screen(levels, units, seen_keys=twin.seen)
    return replace(twin, seen=result.seen_keys)


@dataclass(frozen=True)
class Services:
    """The service's stores on one engine: ``patients``, ``records`` and the patients' ``twins``."""

    patients: object
    records: RecordStore
    twins: LiveTwins

    @classmethod
    def for_engine(cls, engine) -> "Services":
        from medtwin.service.store import PatientStore

        records = RecordStore(engine)
        return cls(PatientStore(engine), records, LiveTwins(engine, records))
