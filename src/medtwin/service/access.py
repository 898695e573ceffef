"""Per-request authorisation of patient data: the user's role gives the purpose, the consent gate decides.

=============  =======================================  ==============================================
role           purposes it may act for                  default purpose
=============  =======================================  ==============================================
clinician      treatment, decision-support              treatment
pharmacist     treatment, decision-support              treatment
researcher     research, model-training                 research
auditor        (none: audit endpoints only)             --
admin          (none: users, patients, consents, audit) --
=============  =======================================  ==============================================

:func:`authorize` asks :class:`medtwin.governance.consent_store.ConsentGate` (the acting user as actor) for
every access to a patient's data; every decision is written to the audit log, a refusal is a 403 naming the
consent.  The gate is returned, so a workflow run with it records the same actor and purpose.

Examples
--------
>>> purpose_for("researcher"), purpose_for("clinician", "decision-support")
('research', 'decision-support')
"""

from __future__ import annotations

from fastapi import HTTPException

__all__ = ["ROLE_PURPOSES", "authorize", "purpose_for", "patient_or_404", "services"]

ROLE_PURPOSES = {"clinician": ("treatment", "decision-support"), "pharmacist": ("treatment", "decision-support"),
                 "researcher": ("research", "model-training")}


def purpose_for(role: str, requested: str | None = None) -> str:
    """The purpose a user of *role* acts for (*requested*, if the role may; else its default); 403 otherwise."""
    allowed = ROLE_PURPOSES.get(role, ())
    if not allowed:
        raise HTTPException(403, detail={"field": "role", "message": f"role {role!r} does not read patient data"})
    if requested is None:
        return allowed[0]
    if requested not in allowed:
        raise HTTPException(403, detail={"field": "purpose", "message": f"role {role!r} may act for "
                                         f"{' or '.join(allowed)}, not {requested!r}"})
    return requested


def services(request):
    """The app's service objects (``request.app.state.services``: patients, records, twins)."""
    return request.app.state.services


def patient_or_404(request, pid: str) -> dict:
    """The patient row, or 404 naming the path parameter."""
    row = services(request).patients.get(pid)
    if row is None:
        raise HTTPException(404, detail={"field": "patient_id", "message": f"no patient {pid!r}"})
    return row


def authorize(request, user, pid: str, data_classes, operation: str, purpose: str | None = None):
    """The consent gate of (user, purpose), after it allowed *operation* on *pid*'s *data_classes* (audited).

    Raises 404 for an unknown patient, 403 for a role without access to patient data or a consent refusal.
    """
    from medtwin.governance.consent_store import ConsentGate

    patient_or_404(request, pid)
    gate = ConsentGate(request.app.state.stores.consents, user.username, purpose_for(user.role, purpose))
    gate.authorize([pid], list(data_classes), operation)  # ConsentError -> 403 (app handler)
    return gate
