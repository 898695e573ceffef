"""FHIR Observation / MedicationAdministration <-> clinical record rows (the stream-file columns).

An Observation carries one reading: ``identifier[0].value`` is the source id (required: ingest is idempotent
by it), ``code.coding[0].code`` the model output (e.g. ``G``, ``C``), ``valueQuantity`` the value and unit,
``effectiveDateTime`` the sampling instant (converted to hours on the patient's clock), ``device.display`` the
device.  A MedicationAdministration carries one dose: ``medication.concept.coding[0].code`` the dose target
(CMT number, state name or route, as in a stream file), ``dosage.dose`` a bolus amount, or ``dosage.rateQuantity``
with ``occurencePeriod`` an infusion (rate per hour, duration from the period).

Examples
--------
>>> obs = {"resourceType": "Observation", "status": "final", "identifier": [{"value": "bg-7"}],
...        "code": {"coding": [{"code": "G"}]}, "valueQuantity": {"value": 7.2, "unit": "mmol/L"},
...        "effectiveDateTime": "2026-01-01T02:00:00Z"}
>>> row = observation_row(obs, "2026-01-01T00:00:00Z")
>>> row["time_h"], row["name"], row["source_id"]
(2.0, 'G', 'bg-7')
>>> observation_resource({**row, "id": 1, "patient": "p1"}, "2026-01-01T00:00:00Z")["effectiveDateTime"]
'2026-01-01T02:00:00+00:00'
"""

from __future__ import annotations

from medtwin.errors import DataError
from medtwin.service.store import hours_since, instant_at

__all__ = ["observation_row", "observation_resource", "administration_row", "administration_resource",
           "bundle_resources"]


def _validated(resource: dict, kind: str, where: str):
    from pydantic import ValidationError

    if not isinstance(resource, dict) or resource.get("resourceType") != kind:
        raise DataError(f"{where}resourceType: must be {kind!r}")
    if kind == "Observation":
        from fhir.resources.observation import Observation as cls
    else:
        from fhir.resources.medicationadministration import MedicationAdministration as cls
    try:
        return cls.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "resource"
        raise DataError(f"{where}{loc}: {first.get('msg')} (FHIR {kind})") from None


def _source_id(res, where: str) -> str:
    if not res.identifier or not res.identifier[0].value:
        raise DataError(f"{where}identifier: a source id (identifier[0].value) is required for idempotent ingest")
    return str(res.identifier[0].value)


def _code(concept, where: str, field: str) -> str:
    if concept is None or not concept.coding or not concept.coding[0].code:
        raise DataError(f"{where}{field}: coding[0].code naming the model output or dose target is required")
    return str(concept.coding[0].code)


def observation_row(resource: dict, origin: str, where: str = "") -> dict:
    """The record row of a FHIR Observation (errors name the element, prefixed by *where*)."""
    res = _validated(resource, "Observation", where)
    q = res.valueQuantity
    if q is None or q.value is None:
        raise DataError(f"{where}valueQuantity.value: the measured value is required")
    if res.effectiveDateTime is None:
        raise DataError(f"{where}effectiveDateTime: the sampling instant is required")
    device = res.device.display if res.device is not None and res.device.display else "lab"
    return {"kind": "obs", "name": _code(res.code, where, "code"), "value": float(q.value),
            "unit": str(q.unit or q.code or ""), "time_h": hours_since(origin, res.effectiveDateTime,
                                                                        f"{where}effectiveDateTime"),
            "source_id": _source_id(res, where), "device": str(device), "resource": resource}


def observation_resource(row: dict, origin: str) -> dict:
    """A stored measurement as a FHIR Observation."""
    return {"resourceType": "Observation", "id": str(row["id"]), "status": "final",
            "identifier": [{"value": row["source_id"]}], "subject": {"reference": f"Patient/{row['patient']}"},
            "code": {"coding": [{"system": "https://medtwin.org/fhir/CodeSystem/model-output", "code": row["name"]}]},
            "valueQuantity": {"value": row["value"], "unit": row["unit"]},
            "effectiveDateTime": instant_at(origin, row["time_h"]), "device": {"display": row["device"]}}


def administration_row(resource: dict, origin: str, where: str = "") -> dict:
    """The record row of a FHIR MedicationAdministration (a bolus or an infusion)."""
    res = _validated(resource, "MedicationAdministration", where)
    name = _code(res.medication.concept if res.medication is not None else None, where, "medication.concept")
    dosage = res.dosage
    if dosage is None:
        raise DataError(f"{where}dosage: dose (bolus) or rateQuantity (infusion) is required")
    base = {"name": name, "source_id": _source_id(res, where), "device": "emr", "resource": resource}
    if dosage.rateQuantity is not None:
        period = res.occurencePeriod
        if period is None or period.start is None or period.end is None:
            raise DataError(f"{where}occurencePeriod: an infusion needs start and end")
        start = hours_since(origin, period.start, f"{where}occurencePeriod.start")
        end = hours_since(origin, period.end, f"{where}occurencePeriod.end")
        return {**base, "kind": "infusion", "time_h": start, "duration_h": end - start,
                "value": float(dosage.rateQuantity.value), "unit": str(dosage.rateQuantity.unit or "")}
    if dosage.dose is None or dosage.dose.value is None:
        raise DataError(f"{where}dosage.dose: the amount is required")
    if res.occurenceDateTime is None:
        raise DataError(f"{where}occurenceDateTime: the administration instant is required")
    return {**base, "kind": "bolus", "time_h": hours_since(origin, res.occurenceDateTime,
                                                           f"{where}occurenceDateTime"),
            "value": float(dosage.dose.value), "unit": str(dosage.dose.unit or "")}


def administration_resource(row: dict, origin: str) -> dict:
    """A stored dose as a FHIR MedicationAdministration."""
    out = {"resourceType": "MedicationAdministration", "id": str(row["id"]), "status": "completed",
           "identifier": [{"value": row["source_id"]}], "subject": {"reference": f"Patient/{row['patient']}"},
           "medication": {"concept": {"coding": [{"code": row["name"]}]}}}
    if row["kind"] == "infusion":
        out["occurencePeriod"] = {"start": instant_at(origin, row["time_h"]),
                                  "end": instant_at(origin, row["time_h"] + row["duration_h"])}
        out["dosage"] = {"rateQuantity": {"value": row["value"], "unit": row["unit"]}}
    else:
        out["occurenceDateTime"] = instant_at(origin, row["time_h"])
        out["dosage"] = {"dose": {"value": row["value"], "unit": row["unit"]}}
    return out


def bundle_resources(body: dict, kind: str) -> list[tuple[dict, str]]:
    """(resource, where) of a single resource or of every entry of a Bundle."""
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        entries = body.get("entry") or []
        if not isinstance(entries, list):
            raise DataError("entry: must be a list")
        return [((e or {}).get("resource") if isinstance(e, dict) else None, f"entry[{i}].resource.")
                for i, e in enumerate(entries)]
    return [(body, "")]
