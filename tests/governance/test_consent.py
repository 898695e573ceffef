"""Dynamic consent: FHIR Consent parsing, the decision point, withdrawal, round trip."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.errors import ConsentError, DataError
from medtwin.governance.consent import (
    DATA_CLASS_SYSTEM, PURPOSES, ConsentDenied, ConsentPolicy, Decision, DefaultPolicy,
    InvalidConsent, Period, Provision, decide, load_consent, require, to_fhir, withdraw,
)

V3 = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MT = "https://medtwin.org/fhir/CodeSystem/purpose"
CODE = {
    "treatment": (V3, "TREAT"), "decision-support": (V3, "CAREMGT"), "research": (V3, "HRESCH"),
    "model-training": (MT, "model-training"), "third-party-sharing": (MT, "third-party-sharing"),
}
CLOUD = "Organization/cloud-vendor"
DOCTOR = "Practitioner/dr-a"
T = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def purpose(*names):
    return [{"system": CODE[n][0], "code": CODE[n][1]} for n in names]


def r5(id_="c1", decision="permit", provision=None, status="active", date_="2026-01-01", period=None,
       patient="p1"):
    doc = {"resourceType": "Consent", "id": id_, "status": status, "date": date_,
           "subject": {"reference": f"Patient/{patient}"}, "decision": decision}
    if provision is not None:
        doc["provision"] = provision
    if period is not None:
        doc["period"] = period
    return doc


ALL_BUT_TPS = ("treatment", "decision-support", "research", "model-training")
PERMIT = r5(provision=[{"purpose": purpose(*ALL_BUT_TPS)},
                       {"purpose": purpose("third-party-sharing"), "actor": [{"reference": {"reference": CLOUD}}]}])
DENY = r5(decision="deny")
# deny everything, except (nested, flipped to permit) treatment and sharing with the cloud vendor
NESTED = r5(decision="deny", provision=[{"provision": [
    {"purpose": purpose("treatment")},
    {"purpose": purpose("third-party-sharing"), "actor": [{"reference": {"reference": CLOUD}}]}]}])
EXPIRED = {**PERMIT, "period": {"start": "2025-01-01", "end": "2026-03-31"}}


def state(name: str, purpose_: str) -> list[ConsentPolicy]:
    if name == "none":
        return []
    if name == "withdrawn":
        base = load_consent(PERMIT)
        return [base, withdraw(base, purpose_, T - timedelta(days=1))]
    return [load_consent({"permit": PERMIT, "deny": DENY, "nested": NESTED, "expired": EXPIRED}[name])]


P, D = True, False
STATES = ("none", "permit", "deny", "nested", "expired", "withdrawn")
#                        none permit deny nested expired withdrawn
TABLE = {
    "treatment":           (P,   P,     D,   P,     P,      D),
    "decision-support":    (D,   P,     D,   D,     D,      D),
    "research":            (D,   P,     D,   D,     D,      D),
    "model-training":      (D,   P,     D,   D,     D,      D),
    "third-party-sharing": (D,   P,     D,   P,     D,      D),
}
CELLS = [(p, s, TABLE[p][i]) for p in TABLE for i, s in enumerate(STATES)]


def test_table_is_complete():
    assert len(CELLS) == 30 and set(TABLE) == set(PURPOSES)


@pytest.mark.parametrize("purpose_,state_,expected", CELLS, ids=[f"{p}-{s}" for p, s, _ in CELLS])
def test_decision_table(purpose_, state_, expected):
    actor = CLOUD if purpose_ == "third-party-sharing" else DOCTOR
    d = decide(state(state_, purpose_), "p1", actor, purpose_, "observations", T)
    assert isinstance(d, Decision)
    assert d.permit is expected, d.reason
    if state_ in ("none", "expired"):
        assert d.consent_id is None and "default policy" in d.reason
    if state_ == "expired":
        assert "expired" in d.reason
    if state_ == "withdrawn":
        assert d.consent_id == f"c1-withdraw-{purpose_}"
    if state_ in ("permit", "deny"):
        assert d.consent_id == "c1"


# ----------------------------------------------------------------------- validation
@pytest.mark.parametrize("doc,path,needle", [
    (r5(status="bogus"), "Consent.status", "entered-in-error"),
    (r5(decision="maybe"), "Consent.decision", "permit | deny"),
    (r5(provision=[{"purpose": [{"system": V3, "code": "BOGUS"}]}]), "Consent.provision[0].purpose[0]",
     f"{V3}|TREAT"),
    (r5(provision=[{"provision": [{"purpose": [{"system": "urn:x", "code": "TREAT"}]}]}]),
     "Consent.provision[0].provision[0].purpose[0]", "model-training"),
    (r5(provision=[{"documentType": [{"system": DATA_CLASS_SYSTEM, "code": "secrets"}]}]),
     "Consent.provision[0].documentType[0]", "genomics"),
])
def test_bogus_values_rejected_with_path_and_allowed_values(doc, path, needle):
    with pytest.raises(DataError) as err:
        load_consent(doc)
    assert isinstance(err.value, InvalidConsent)
    assert err.value.path == path
    assert str(err.value).startswith(path) and needle in str(err.value)


def test_r4b_bogus_status_and_type_rejected():
    base = {"resourceType": "Consent", "status": "active", "scope": {"text": "privacy"},
            "category": [{"text": "x"}], "patient": {"reference": "Patient/p1"},
            "provision": {"type": "permit"}}
    with pytest.raises(DataError, match=r"Consent.status: 'bogus'.*proposed"):
        load_consent({**base, "status": "bogus"})
    with pytest.raises(DataError, match=r"Consent.provision.type: 'allow'.*permit \| deny"):
        load_consent({**base, "provision": {"type": "allow"}})
    with pytest.raises(DataError, match=r"provision.provision\[0\].type.*opposite"):
        load_consent({**base, "provision": {"type": "permit", "provision": [{"type": "permit"}]}})


def test_structurally_invalid_resource_is_a_data_error():
    with pytest.raises(DataError, match="invalid FHIR R5 Consent"):
        load_consent(r5(provision="not a list"))
    with pytest.raises(DataError, match="resourceType"):
        load_consent({"resourceType": "Patient", "id": "p1"})


def test_load_from_json_text_and_path(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(PERMIT))
    assert load_consent(f) == load_consent(json.dumps(PERMIT)) == load_consent(str(f)) == load_consent(PERMIT)


# ----------------------------------------------------------------------- R4B
def test_r4b_import_equals_r5_meaning():
    r4b = {"resourceType": "Consent", "id": "c9", "status": "active", "dateTime": "2026-02-03T10:00:00Z",
           "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                 "code": "patient-privacy"}]},
           "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
           "patient": {"reference": "Patient/p1"},
           "provision": {"type": "permit", "period": {"start": "2026-01-01", "end": "2026-12-31"},
                         "purpose": purpose("research", "model-training"),
                         "class": [{"system": DATA_CLASS_SYSTEM, "code": "observations"},
                                   {"system": "http://hl7.org/fhir/resource-types", "code": "Patient"}],
                         "actor": [{"role": {"text": "recipient"}, "reference": {"reference": "Organization/lab"}}],
                         "provision": [{"type": "deny", "purpose": purpose("model-training")}]}}
    r5doc = r5(id_="c9", date_="2026-02-03", provision=[{
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "purpose": purpose("research", "model-training"),
        "documentType": [{"system": DATA_CLASS_SYSTEM, "code": "observations"}],
        "resourceType": [{"system": "http://hl7.org/fhir/fhir-types", "code": "Patient"}],
        "actor": [{"reference": {"reference": "Organization/lab"}}],
        "provision": [{"purpose": purpose("model-training")}]}])
    a, b = load_consent(r4b), load_consent(r5doc)
    assert a == b
    assert a.provisions[0].data_classes == frozenset({"observations", "demographics"})
    for p in PURPOSES:
        for cls in ("observations", "genomics"):
            assert decide([a], "p1", "Organization/lab", p, cls, T) == decide([b], "p1", "Organization/lab", p, cls, T)
    assert decide([a], "p1", "Organization/lab", "research", "observations", T).permit
    assert not decide([a], "p1", "Organization/lab", "model-training", "observations", T).permit


def test_r4b_status_mapping():
    doc = {"resourceType": "Consent", "status": "rejected", "scope": {"text": "x"}, "category": [{"text": "x"}],
           "patient": {"reference": "Patient/p1"}, "provision": {"type": "deny"}}
    assert load_consent(doc).status == "not-done"


# ----------------------------------------------------------------------- semantics
def test_withdrawal_takes_effect_for_the_next_decision():
    base = load_consent(PERMIT)
    t_w = T + timedelta(hours=1)
    w = withdraw(base, "research", t_w)
    assert base == load_consent(PERMIT)  # pure
    assert decide([base, w], "p1", DOCTOR, "research", "observations", T).permit  # before: still permitted
    after = decide([base, w], "p1", DOCTOR, "research", "observations", t_w + timedelta(seconds=1))
    assert not after.permit and after.consent_id == "c1-withdraw-research"
    assert decide([base, w], "p1", DOCTOR, "treatment", "observations", t_w + timedelta(days=1)).permit


def test_inactive_and_entered_in_error_are_ignored():
    for status in ("inactive", "entered-in-error", "draft"):
        d = decide([load_consent({**DENY, "status": status})], "p1", DOCTOR, "treatment", "observations", T)
        assert d.permit and d.consent_id is None and status in d.reason
    d = decide([load_consent({**PERMIT, "status": "inactive"})], "p1", DOCTOR, "research", "observations", T)
    assert not d.permit and "withdrawn" in d.reason


def test_not_yet_valid_and_other_patient():
    c = load_consent({**DENY, "period": {"start": "2027-01-01"}})
    d = decide([c], "p1", DOCTOR, "treatment", "observations", T)
    assert d.permit and "not yet valid" in d.reason
    assert decide([load_consent(r5(decision="deny", patient="p2"))], "Patient/p1", DOCTOR, "treatment",
                  "observations", T).permit


def test_most_recent_consent_wins():
    old_deny = load_consent(r5("old", "deny", [{"purpose": purpose("research")}], date_="2026-01-01"))
    new_permit = load_consent(r5("new", "permit", [{"purpose": purpose("research")}], date_="2026-03-01"))
    d = decide([new_permit, old_deny], "p1", DOCTOR, "research", "observations", T)
    assert d.permit and d.consent_id == "new" and "most recent of 2" in d.reason
    newer_deny = load_consent(r5("newer", "deny", [{"purpose": purpose("research")}], date_="2026-05-01"))
    d = decide([old_deny, new_permit, newer_deny], "p1", DOCTOR, "research", "observations", T)
    assert not d.permit and d.consent_id == "newer"
    same_day = load_consent(r5("same", "deny", [{"purpose": purpose("research")}], date_="2026-03-01"))
    assert not decide([new_permit, same_day], "p1", DOCTOR, "research", "observations", T).permit  # tie: deny


def test_third_party_actor_must_match():
    c = load_consent(PERMIT)
    assert decide([c], "p1", CLOUD, "third-party-sharing", "observations", T).permit
    d = decide([c], "p1", "Organization/other-cloud", "third-party-sharing", "observations", T)
    assert not d.permit and d.consent_id is None
    # a permit that does not name the third party (or the purpose) grants no sharing
    for prov in (None, [{"purpose": purpose("third-party-sharing")}]):
        c2 = load_consent(r5(provision=prov))
        assert not decide([c2], "p1", CLOUD, "third-party-sharing", "observations", T).permit
    # the actor named on the parent covers a nested exception's scope
    c3 = load_consent(r5(decision="permit", provision=[{
        "actor": [{"reference": {"reference": CLOUD}}], "purpose": purpose("third-party-sharing"),
        "provision": [{"documentType": [{"system": DATA_CLASS_SYSTEM, "code": "genomics"}]}]}]))
    assert decide([c3], "p1", CLOUD, "third-party-sharing", "observations", T).permit
    assert not decide([c3], "p1", CLOUD, "third-party-sharing", "genomics", T).permit


def test_data_class_scoping():
    c = load_consent(r5(provision=[{"purpose": purpose("research"),
                                    "documentType": [{"system": DATA_CLASS_SYSTEM, "code": "observations"}]}]))
    assert decide([c], "p1", DOCTOR, "research", "observations", T).permit
    assert not decide([c], "p1", DOCTOR, "research", "genomics", T).permit
    assert not decide([c], "p1", DOCTOR, "research", "all", T).permit
    # general permit for research, nested exception: no genomics
    n = load_consent(r5(provision=[{"purpose": purpose("research"), "provision": [
        {"documentType": [{"system": DATA_CLASS_SYSTEM, "code": "genomics"}]}]}]))
    assert decide([n], "p1", DOCTOR, "research", "imaging", T).permit
    d = decide([n], "p1", DOCTOR, "research", "genomics", T)
    assert not d.permit and "provision[0].provision[0]" in d.reason
    assert not decide([n], "p1", DOCTOR, "research", "all", T).permit
    # "all" in a provision means every class
    a = load_consent(r5(provision=[{"purpose": purpose("research"),
                                    "documentType": [{"system": DATA_CLASS_SYSTEM, "code": "all"}]}]))
    assert a.provisions[0].data_classes is None
    assert decide([a], "p1", DOCTOR, "research", "all", T).permit


def test_unknown_request_values_rejected():
    with pytest.raises(DataError, match="purpose 'marketing'"):
        decide([], "p1", DOCTOR, "marketing", "observations", T)
    with pytest.raises(DataError, match="data_class"):
        decide([], "p1", DOCTOR, "research", "emails", T)


def test_default_policy_is_configurable():
    strict = DefaultPolicy(permitted=frozenset(), name="strict")
    assert not decide([], "p1", DOCTOR, "treatment", "observations", T, strict).permit
    team = DefaultPolicy(care_team=frozenset({DOCTOR}))
    assert decide([], "p1", DOCTOR, "treatment", "observations", T, team).permit
    assert not decide([], "p1", "Practitioner/stranger", "treatment", "observations", T, team).permit


# ----------------------------------------------------------------------- require
def test_require_raises_consent_error_and_reports_every_decision():
    seen = []
    ok = require([load_consent(PERMIT)], "p1", DOCTOR, "research", "observations", T, on_decision=seen.append)
    assert ok.permit and ok.consent_id == "c1"
    with pytest.raises(ConsentError) as err:
        require([load_consent(DENY)], "p1", DOCTOR, "research", "observations", T, on_decision=seen.append)
    assert isinstance(err.value, ConsentDenied) and isinstance(err.value, PermissionError)
    assert err.value.consent_id == "c1" and "c1" in str(err.value) and err.value.reason in str(err.value)
    assert [d.permit for d in seen] == [True, False]
    assert seen[1].purpose == "research" and seen[1].actor == DOCTOR and seen[1].patient == "p1"


# ----------------------------------------------------------------------- round trip
@pytest.mark.parametrize("policy", [
    load_consent(PERMIT), load_consent(DENY), load_consent(NESTED), load_consent(EXPIRED),
    withdraw(load_consent(PERMIT), "model-training", T),
    load_consent({k: v for k, v in PERMIT.items() if k not in ("id", "date")}),
])
def test_round_trip(policy):
    from fhir.resources.consent import Consent

    doc = to_fhir(policy)
    Consent.model_validate(doc)
    assert load_consent(doc) == policy
    assert load_consent(json.dumps(doc)) == policy


def _times():
    return st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.just(timezone.utc))


def _ordered_period(a, b):
    """A valid Period (a period that ends before it starts is refused on reading: see the test below)."""
    return Period(a, b) if a is None or b is None else Period(min(a, b), max(a, b))


def test_a_provision_period_that_ends_before_it_starts_is_refused():
    doc = r5(provision=[{"period": {"start": "2026-06-01", "end": "2026-01-31"}, "purpose": purpose("research")}])
    with pytest.raises(InvalidConsent, match=r"Consent.provision\[0\].period.end: the consent ends \(2026-01-31\) "
                                             r"before it starts \(2026-06-01\)"):
        load_consent(doc)


def _provisions(depth=2):
    sets = lambda xs: st.one_of(st.none(), st.frozensets(st.sampled_from(xs), min_size=1))  # noqa: E731
    period = st.one_of(st.none(), st.builds(_ordered_period, st.one_of(st.none(), _times()),
                                            st.one_of(st.none(), _times())))
    kids = st.just(()) if depth == 0 else st.lists(_provisions(depth - 1), max_size=2).map(tuple)
    return st.builds(Provision, sets(PURPOSES), sets(("observations", "genomics", "imaging")),
                     sets((CLOUD, DOCTOR)), period, kids)


@settings(max_examples=60, deadline=None)
@given(status=st.sampled_from(("draft", "active", "inactive", "not-done", "entered-in-error", "unknown")),
       decision=st.sampled_from(("permit", "deny")), day=st.one_of(st.none(), st.dates(date(2020, 1, 1))),
       provisions=st.lists(_provisions(), max_size=3).map(tuple))
def test_round_trip_property(status, decision, day, provisions):
    p = ConsentPolicy("cx", "p7", status, decision, day, None, provisions)
    assert load_consent(to_fhir(p)) == p


@settings(max_examples=60, deadline=None)
@given(provs=st.lists(st.tuples(st.sampled_from(("permit", "deny")), st.dates(date(2025, 1, 1), date(2026, 5, 1)),
                                st.lists(_provisions(1), max_size=2).map(tuple)), min_size=1, max_size=4),
       purpose_=st.sampled_from(PURPOSES), actor=st.sampled_from((CLOUD, DOCTOR)),
       cls=st.sampled_from(("observations", "genomics", "all")), data=st.data())
def test_decide_ignores_order_and_withdrawal_always_denies(provs, purpose_, actor, cls, data):
    consents = [ConsentPolicy(f"c{i}", "p1", "active", dec, day, None, pr) for i, (dec, day, pr) in enumerate(provs)]
    d = decide(consents, "p1", actor, purpose_, cls, T)
    shuffled = data.draw(st.permutations(consents))
    assert decide(shuffled, "p1", actor, purpose_, cls, T) == d
    w = withdraw(consents[0], purpose_, T - timedelta(seconds=1))
    assert not decide([*consents, w], "p1", actor, purpose_, cls, T).permit


def test_permit_restrictions_medtwin_cannot_enforce_are_refused():
    with pytest.raises(DataError, match=r"Consent.provision\[0\].data: not supported"):
        load_consent(r5(provision=[{"data": [{"meaning": "instance", "reference": {"reference": "Observation/1"}}]}]))
    ca = "http://terminology.hl7.org/CodeSystem/consentaction"
    with pytest.raises(DataError, match=r"action: a permit must include access or use"):
        load_consent(r5(provision=[{"action": [{"coding": [{"system": ca, "code": "correct"}]}]}]))
    ok = load_consent(r5(provision=[{"action": [{"coding": [{"system": ca, "code": "access"}]}]}]))
    assert decide([ok], "p1", DOCTOR, "research", "observations", T).permit
    # on a deny provision an unenforceable restriction only widens the deny, which is safe
    deny = load_consent(r5(decision="deny", provision=[{"securityLabel": [{"code": "R"}]}]))
    assert not decide([deny], "p1", DOCTOR, "treatment", "observations", T).permit
