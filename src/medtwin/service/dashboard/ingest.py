"""The dashboard's writes: a measurement typed into the twin page, and the demo ward's live twins.

Both go through the service's own code path (:mod:`medtwin.service.twins`: records stored idempotently by
``source_id``, the stored twin assimilating them exactly as :meth:`medtwin.twin.Twin.assimilate`, events
published to open dashboards), so a form post and an API post are the same ingest.
"""

from __future__ import annotations

import uuid

__all__ = ["record_measurement", "store_twin"]


def record_measurement(app, user, patient: str, output: str, time_h: float, value: float, unit: str) -> str:
    """Store one measurement of *patient* typed by *user* and assimilate it into the live twin.

    Returns the message the page shows (aria-live).  Raises DataError naming the field for a refused value,
    ConsentError when the user may not write the patient's data.
    """
    twins = _twins()
    row = {"kind": "obs", "name": output, "time_h": float(time_h), "value": float(value), "unit": unit,
           "device": "dashboard", "source_id": f"ui-{uuid.uuid4().hex}"}
    result = twins.ingest(app, patient, [row], user)
    n_new = getattr(result, "stored", None)
    note = "" if n_new in (None, 1) else f" ({n_new} new)"
    return f"Recorded {output} {value:g} {unit} at {time_h:g} h{note}; the twin is updating."


def store_twin(app, patient: str, spec: dict, twin, actor: str) -> None:
    """Create (or replace) *patient*'s live twin row from *spec* and the twin value *twin*."""
    _twins().store_twin(app, patient, spec, twin, actor)


def _twins():
    """The service's twin module (``medtwin.service.twins``), or the interim minimal one below until it lands."""
    try:
        from medtwin.service import twins
    except ImportError:
        return _Interim
    return twins


class _Interim:
    """Interim ingest (records stored, twin assimilated, state event) until ``medtwin.service.twins`` exists."""

    @staticmethod
    def store_twin(app, patient, spec, twin, actor):
        import json

        import sqlalchemy as sa

        from medtwin.io.service_tables import twins_table
        from medtwin.service.store import now_iso

        row = {"patient": patient, "name": spec.get("model", "twin"), "spec": json.dumps(spec),
               "state": json.dumps(twin.to_dict()), "version": 1, "updated_at": now_iso()}
        if "last_record" in twins_table.c:
            row["last_record"] = 0
        with app.state.stores.engine.begin() as conn:
            conn.execute(twins_table.delete().where(twins_table.c.patient == patient))
            conn.execute(twins_table.insert().values(**row))

    @staticmethod
    def ingest(app, patient, rows, user):
        import json

        import sqlalchemy as sa

        from medtwin.core.stream import Measurement
        from medtwin.io.service_tables import twins_table
        from medtwin.service.store import RecordStore, now_iso
        from medtwin.twin.codec import twin_from_dict

        stored = RecordStore(app.state.stores.engine).add(patient, rows, user.username)
        new = [Measurement(r["time_h"], r["name"], r["value"], r["unit"], device=r["device"],
                           source_id=r["source_id"]) for r, created in stored if created and r["kind"] == "obs"]
        engine = app.state.stores.engine
        with engine.begin() as conn:
            row = conn.execute(sa.select(twins_table).where(twins_table.c.patient == patient)).first()
            if row is not None and new:
                twin = twin_from_dict(json.loads(row.state)).assimilate(new)
                conn.execute(twins_table.update().where(twins_table.c.patient == patient).values(
                    state=json.dumps(twin.to_dict()), version=row.version + 1, updated_at=now_iso()))
        for r, created in stored:
            if created:
                app.state.broker.publish({"type": "measurement", "patient": patient, "data": {"id": r.get("id")}})
        app.state.broker.publish({"type": "state", "patient": patient, "data": {}})
        return type("Ingested", (), {"stored": sum(c for _, c in stored)})()
