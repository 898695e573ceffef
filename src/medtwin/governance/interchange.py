"""Interchange formats for provenance records: W3C PROV-JSON (round trip) and FHIR R5 Provenance.

Examples
--------
>>> from medtwin.governance.canonical import digest
>>> from medtwin.governance.provenance import ProvenanceRecord
>>> r = ProvenanceRecord(run_id="00000000-0000-4000-8000-000000000000", operation="simulate",
...                      time="2026-11-25T15:37:00+00:00", operator="alice", output_digest=digest([1.0]))
>>> from_prov_json(to_prov_json(r)) == r
True
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from typing import Any

from medtwin.errors import DataError
from medtwin.governance.provenance import ProvenanceRecord

PROV_NAMESPACE = "urn:medtwin:"
_JSON_FIELDS = ("code_version", "dependencies", "solver", "platform", "seeds")
_TEXT_FIELDS = ("run_id", "operation", "time", "operator", "schema", "signer", "signature", "output_digest")


def to_prov_json(record: ProvenanceRecord) -> str:
    """W3C PROV-JSON: an activity, entities for inputs/model/outputs, an agent for the operator.

    Record fields without a PROV counterpart are ``medtwin:`` attributes of the
    activity (mappings as canonical JSON text), so :func:`from_prov_json` is exact.

    Examples
    --------
    >>> from medtwin.governance.canonical import digest
    >>> r = ProvenanceRecord(run_id="00000000-0000-4000-8000-000000000000", operation="simulate",
    ...                      time="2026-11-25T15:37:00+00:00", operator="alice",
    ...                      input_digests={"params": digest({"CL": 5.0})})
    >>> from_prov_json(to_prov_json(r)) == r
    True
    """
    from prov.model import ProvDocument

    doc = ProvDocument()
    doc.add_namespace("medtwin", PROV_NAMESPACE)
    rid = record.run_id
    attrs = {f"medtwin:{k}": getattr(record, k) for k in _TEXT_FIELDS if getattr(record, k) is not None}
    attrs.update({f"medtwin:{k}": json.dumps(getattr(record, k), sort_keys=True) for k in _JSON_FIELDS})
    activity = doc.activity(f"medtwin:run-{rid}", endTime=_dt.datetime.fromisoformat(
        record.time.replace("Z", "+00:00")), other_attributes=attrs)
    agent = doc.agent(f"medtwin:operator-{rid}", {"prov:type": "prov:Agent", "medtwin:name": record.operator})
    doc.wasAssociatedWith(activity, agent)
    for i, (name, dig) in enumerate(sorted(record.input_digests.items())):
        doc.used(activity, doc.entity(f"medtwin:input-{rid}-{i}", {
            "medtwin:role": "input", "medtwin:name": name, "medtwin:digest": dig}))
    if record.model_digest is not None:
        doc.used(activity, doc.entity(f"medtwin:model-{rid}", {
            "medtwin:role": "model", "medtwin:digest": record.model_digest}))
    for i, (name, dig) in enumerate(sorted(record.output_digests.items())):
        doc.wasGeneratedBy(doc.entity(f"medtwin:output-{rid}-{i}", {
            "medtwin:role": "output", "medtwin:name": name, "medtwin:digest": dig}), activity)
    if record.output_digest is not None:
        doc.wasGeneratedBy(doc.entity(f"medtwin:result-{rid}", {
            "medtwin:role": "result", "medtwin:digest": record.output_digest}), activity)
    return doc.serialize(format="json")


def from_prov_json(text: str) -> ProvenanceRecord:
    """Rebuild the :class:`ProvenanceRecord` written by :func:`to_prov_json`."""
    from prov.model import ProvActivity, ProvDocument, ProvEntity

    try:
        doc = ProvDocument.deserialize(content=text, format="json")
    except Exception as err:  # prov raises assorted errors on malformed documents
        raise DataError(f"not a PROV-JSON document: {err}") from None

    def attrs(rec) -> dict:
        return {str(k).split(":", 1)[1]: v for k, v in rec.attributes if str(k).startswith("medtwin:")}

    runs = [attrs(r) for r in doc.get_records(ProvActivity) if "run_id" in attrs(r)]
    if len(runs) != 1:
        raise DataError(f"expected one medtwin activity in the PROV document, found {len(runs)}")
    data: dict[str, Any] = {k: runs[0].get(k) for k in _TEXT_FIELDS}
    data.update({k: json.loads(runs[0][k]) for k in _JSON_FIELDS if k in runs[0]})
    data["input_digests"], data["output_digests"] = {}, {}
    for ent in (attrs(e) for e in doc.get_records(ProvEntity)):
        role = ent.get("role")
        if role in ("input", "output"):
            data[f"{role}_digests"][ent["name"]] = ent["digest"]
        elif role == "model":
            data["model_digest"] = ent["digest"]
    if data.get("schema") is None:
        data.pop("schema")
    return ProvenanceRecord(**data)


_DIGEST_SYSTEM = "urn:medtwin:digest"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _digest_ref(name: str, dig: str) -> dict:
    ref: dict[str, Any] = {"identifier": {"system": _DIGEST_SYSTEM, "value": dig}}
    if name.strip():  # FHIR strings may not be empty
        ref["display"] = name
    return ref


def to_fhir_provenance(record: ProvenanceRecord) -> dict:
    """A FHIR R5 ``Provenance`` resource (as a dict) for ``record``.

    Targets are the outputs (by digest identifier), ``recorded`` the record
    time, the agent the operator, entities the inputs (role ``source``) and
    the model (role ``instantiates``); a signed record carries its signature.

    Examples
    --------
    >>> from fhir.resources.provenance import Provenance
    >>> from medtwin.governance.canonical import digest
    >>> r = ProvenanceRecord(run_id="00000000-0000-4000-8000-000000000000", operation="simulate",
    ...                      time="2026-11-25T15:37:00+00:00", operator="alice", output_digest=digest([1.0]))
    >>> Provenance.model_validate(to_fhir_provenance(r)).get_resource_type()
    'Provenance'
    """
    targets = [_digest_ref(n, d) for n, d in sorted(record.output_digests.items())]
    if record.output_digest is not None:
        targets.append(_digest_ref("result", record.output_digest))
    if not targets:  # FHIR requires a target: fall back to the run itself
        targets.append({"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{record.run_id}"}})
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": targets,
        "occurredDateTime": record.time,
        "recorded": record.time,
        "activity": {"text": record.operation},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "performer"}]},
            "who": {"display": record.operator},
        }],
    }
    if _FHIR_ID.match(record.run_id):
        resource["id"] = record.run_id
    entities = [{"role": "source", "what": _digest_ref(n, d)} for n, d in sorted(record.input_digests.items())]
    if record.model_digest is not None:
        entities.append({"role": "instantiates", "what": _digest_ref("model", record.model_digest)})
    if entities:
        resource["entity"] = entities
    if record.signature:
        resource["signature"] = [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.14",
                      "display": "Source Signature"}],
            "when": record.time,
            "who": {"identifier": {"system": "urn:medtwin:ed25519-key-id", "value": record.signer}},
            "data": base64.b64encode(bytes.fromhex(record.signature)).decode("ascii"),
        }]
    return resource
