"""Governance: canonical digests, signed provenance records, PROV-JSON and FHIR exports.

The database-backed parts live in their own modules, imported on demand:
:mod:`~medtwin.governance.audit` (hash-chained signed log),
:mod:`~medtwin.governance.consent` / :mod:`~medtwin.governance.consent_store`
(FHIR Consent, policy decision point, :class:`ConsentGate`) and
:mod:`~medtwin.governance.runs` (recorded runs: specs, the run store, integrity checks; executing and
reproducing them is :mod:`medtwin.workflows`).

Examples
--------
>>> from medtwin.governance import digest
>>> digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
True
"""

from medtwin.governance.canonical import DIGEST_PREFIX, UnsupportedValueError, canonical_bytes, digest
from medtwin.governance.provenance import (
    KEY_FILENAME,
    KeyFileError,
    ProvenanceRecord,
    environment,
    key_id,
    load_or_create_key,
    new_run_id,
    now,
    output_digest,
    record_for_result,
    record_for_simulation,
    sign,
    signing_payload,
    verify,
)
from medtwin.governance.interchange import from_prov_json, to_fhir_provenance, to_prov_json

__all__ = [
    "DIGEST_PREFIX", "KEY_FILENAME", "KeyFileError", "ProvenanceRecord", "UnsupportedValueError",
    "canonical_bytes", "digest", "environment", "from_prov_json", "key_id", "load_or_create_key",
    "new_run_id", "now", "output_digest", "record_for_result", "record_for_simulation", "sign", "signing_payload", "to_fhir_provenance",
    "to_prov_json", "verify",
]
