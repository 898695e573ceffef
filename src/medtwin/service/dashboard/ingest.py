"""The dashboard's write: a measurement typed into the twin page, ingested as the API ingests one.

The record is stored by the service's record store (idempotent by ``source_id``, committed before the answer),
the patient's stored twin catches up with it (:meth:`medtwin.service.livetwin.LiveTwins.catch_up`: exactly
``Twin.assimilate``), and the ``measurement`` and ``state`` events go to the open dashboards.
"""

from __future__ import annotations

import uuid

__all__ = ["record_measurement"]


def record_measurement(app, user, access, patient: str, output: str, time_h: float, value: float,
                       unit: str) -> str:
    """Store one measurement of *patient* typed by *user* (through the consent gate *access*) and assimilate it.

    Returns the message the page shows (its aria-live region).  Raises DataError naming the field for a
    refused value.
    """
    services = app.state.services
    access.authorize([patient], ["observations"], "write")
    row = {"kind": "obs", "name": output, "time_h": float(time_h), "value": float(value), "unit": unit,
           "device": "dashboard", "source_id": f"ui-{uuid.uuid4().hex}"}
    stored = services.records.add(patient, [row], user.username)
    update = services.twins.catch_up(patient, access)
    broker = app.state.broker
    for record, created in stored:
        if created:
            broker.publish({"type": "measurement", "patient": patient,
                            "data": {"time_h": record["time_h"], "name": record["name"], "value": record["value"],
                                     "unit": record["unit"], "source_id": record["source_id"]}})
    if update is not None:
        broker.publish({"type": "state", "patient": patient, "data": {"version": update.version}})
        for alarm in update.new_alarms:
            broker.publish({"type": "alarm", "patient": patient,
                            "data": {"kind": alarm.kind, "time_h": float(alarm.time), "message": alarm.message}})
    return f"Recorded {output} {value:g} {unit} at {time_h:g} h; the twin has assimilated it."
