"""The shipped policies decide exactly as the reference policies do.

tests/policies/reference/ holds the policies as they were before the indexed fast path
(data.indexes, `allow` checked before any reason, reasons worked through group by group):
straightforward rules that list every reason and allow only when there is none. The shipped
policies must give the same allow, reasons and obligations for every request, so this drives
both through the real embedded engine with a few thousand generated requests: valid ones of
every role and action, and ones with each field missing, unknown, of the wrong type or in
conflict. A failure prints the request.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from policies import PolicyEngine
from policies.bundle import DATA_DIR, load_bundle

REFERENCE_DIR = Path(__file__).parent / "reference"
PERSON = "ab" * 32
OTHER = "cd" * 32

SUBJECTS = [
    {"id": "u1", "role": "adviser", "organisation": "csc-margate"},
    {"id": "u2", "role": "provider", "organisation": "provider-a"},
    {"id": "u3", "role": "provider", "organisation": "provider-c"},
    {"id": "u4", "role": "governance", "organisation": "governance-board"},
    {"id": "u5", "role": "data_officer", "organisation": "linkage-unit"},
    {"id": "u6", "role": "admin", "organisation": "joinedup-ops"},
    {"id": "c1", "role": "citizen", "organisation": "public", "person_key": PERSON},
    {"id": "c2", "role": "citizen", "organisation": "public", "person_key": OTHER},
    {"id": "u7", "role": "adviser", "organisation": "provider-a"},
    {"id": "u8", "role": "superuser", "organisation": "csc-margate"},
    {"id": "u9", "role": "adviser", "organisation": "acme"},
    {"id": "u10", "role": "governance", "organisation": 5},
    {"id": "u11", "role": "adviser"},
    {"id": 7, "role": "adviser", "organisation": "csc-margate"},
    {"role": "governance", "organisation": "governance-board"},
    None,
]
PURPOSES = [None, "employment_support", "service_planning", "linkage_operations", "oversight",
            "subject_access", "administration", "marketing", 3]
TIMES = [None, "2026-11-22T10:00:00Z", "2025-06-01T09:00:00Z", "2028-01-02T10:00:00Z",
         "2024-06-01T00:00:00Z", "2027-12-31T23:59:59Z", "2026-11-22T11:30:00+01:00", "yesterday"]
CATEGORY_LISTS = [None, [], ["MH", "SUB", "HOU"], ["HOU"], ["OFF", "XYZ"], ["MH", "MH"],
                  ["FIN", "CAR", "WRK"], "MH", {"a": "HOU"}]
SOURCE_LISTS = [None, [], ["dwp"], ["dwp", "nhs"], ["probation"], ["housing", "council", "probation"]]
CONSENT_CATEGORIES = [["dwp", "nhs", "MH", "HOU", "FIN"], ["dwp", "council", "housing", "nhs", "MH", "HOU"],
                      ["dwp", "SKL"], [], ["HOU"], {"x": "HOU", "y": "dwp"}, "MH"]


def _pick(rng: random.Random, options: list):
    return rng.choice(options)


def _consent(rng: random.Random) -> dict | None:
    if rng.random() < 0.1:
        return None
    consent = {
        "status": _pick(rng, ["active", "active", "active", "withdrawn", "expired", "none", "maybe", None]),
        "purposes": _pick(rng, [["employment_support"], ["service_planning"], [], "employment_support"]),
        "categories": _pick(rng, CONSENT_CATEGORIES),
        "receipt_id": f"r-{rng.randrange(10**6)}",
        "expires_at": _pick(rng, ["2027-06-01T00:00:00Z", "2026-11-01T00:00:00Z", "2029-01-01T00:00:00Z",
                                  "not a time", None, 12]),
        "person_key": _pick(rng, [PERSON, PERSON, PERSON, OTHER, None]),
    }
    for key in list(consent):
        if consent[key] is None or rng.random() < 0.05:
            del consent[key]
    return consent


def generate(n: int, seed: int = 4) -> list[dict]:
    """Requests over every role, action and purpose, with fields dropped, unknown or mistyped."""
    rng = random.Random(seed)
    actions = sorted(load_bundle().data["actions"]) + ["summary.delete", 12]
    out = []
    for _ in range(n):
        request: dict = {
            "subject": _pick(rng, SUBJECTS),
            "action": _pick(rng, actions),
            "purpose": _pick(rng, PURPOSES),
            "time": _pick(rng, TIMES),
            "resource": {
                "person_key": _pick(rng, [PERSON, PERSON, OTHER, None, 42]),
                "categories": _pick(rng, CATEGORY_LISTS),
                "sources": _pick(rng, SOURCE_LISTS),
                "referred_to": _pick(rng, [None, ["provider-a"], ["provider-b"], [], "provider-a"]),
                "provider": _pick(rng, [None, "provider-a", "provider-c", "provider-z", "csc-margate", False, 9]),
            },
            "consent": _consent(rng),
        }
        request["resource"] = {k: v for k, v in request["resource"].items() if v is not None}
        out.append({k: v for k, v in request.items() if v is not None})
    # Make sure the allowed paths are well covered: valid requests of each kind, varied.
    for i in range(n // 2):
        kind = i % 5
        consent = {"status": "active", "purposes": ["employment_support"], "person_key": PERSON,
                   "categories": _pick(rng, CONSENT_CATEGORIES[:5]), "expires_at": "2027-06-01T00:00:00Z"}
        base = {"time": _pick(rng, ["2026-11-22T10:00:00Z", "2026-01-01T00:00:00Z", "2027-05-31T23:00:00Z"]),
                "consent": consent}
        resource = {"person_key": PERSON, "categories": _pick(rng, CATEGORY_LISTS[:7])}
        if kind == 0:
            base.update(subject=SUBJECTS[0], action="summary.request", purpose="employment_support", resource=resource)
        elif kind == 1:
            resource["referred_to"] = _pick(rng, [["provider-a"], ["provider-a", "provider-b"]])
            base.update(subject=SUBJECTS[1], action="referral.read", purpose="employment_support", resource=resource)
        elif kind == 2:
            resource["provider"] = _pick(rng, ["provider-a", "provider-b", "provider-c"])
            base.update(subject=SUBJECTS[0], action="referral.create", purpose="employment_support", resource=resource)
        elif kind == 3:
            base.update(subject=SUBJECTS[3], action="area_counts.read", resource={"categories": resource["categories"]})
        else:
            base.update(subject=SUBJECTS[4], action=_pick(rng, ["extract.ingest", "linkage.run"]),
                        resource={"sources": _pick(rng, SOURCE_LISTS)})
        if rng.random() < 0.5:
            _spoil(rng, base)
        out.append(base)
    return out


def _spoil(rng: random.Random, request: dict) -> None:
    """Change one thing in an otherwise valid request, so each single refusal is exercised."""
    resource, consent = request["resource"], request["consent"]
    change = rng.randrange(14)
    if change == 0:
        resource["referred_to"] = ["provider-b"]
    elif change == 1:
        resource.pop("person_key", None)
    elif change == 2:
        consent["status"] = _pick(rng, ["withdrawn", "expired", "none", "maybe"])
    elif change == 3:
        consent["person_key"] = OTHER
    elif change == 4:
        consent["expires_at"] = _pick(rng, ["2026-01-01T00:00:00Z", "2026-11-22T10:00:00Z"])
    elif change == 5:
        consent["purposes"] = ["service_planning"]
    elif change == 6:
        request["time"] = _pick(rng, ["2028-03-01T00:00:00Z", "2025-03-01T00:00:00Z", "soon"])
    elif change == 7:
        request["purpose"] = _pick(rng, ["oversight", "marketing", "service_planning"])
    elif change == 8:
        request["subject"] = _pick(rng, SUBJECTS)
    elif change == 9:
        resource["provider"] = _pick(rng, ["provider-z", "csc-margate", "provider-c", 9])
    elif change == 10:
        consent["categories"] = _pick(rng, [["dwp"], ["MH", "HOU"], []])
    elif change == 11:
        resource["sources"] = _pick(rng, [["probation"], ["dwp", "probation"], ["nhs"]])
    elif change == 12:
        request["action"] = _pick(rng, ["summary.request", "referral.read", "referral.create",
                                        "audit.subject_access", "consent.record", "users.manage"])
    else:
        request.pop(_pick(rng, ["subject", "action", "time", "resource", "consent"]), None)


@pytest.fixture(scope="module")
def engines():
    return PolicyEngine.embedded(REFERENCE_DIR, DATA_DIR), PolicyEngine.embedded()


def test_shipped_policies_decide_as_the_reference_does(engines):
    reference, shipped = engines
    requests = generate(1200)
    allowed = 0
    for request in requests:
        want, got = reference.decide(request), shipped.decide(request)
        assert (got.allow, got.reasons, got.obligations) == (want.allow, want.reasons, want.obligations), request
        allowed += want.allow
    # Both outcomes must be well represented or the comparison proves little.
    assert 200 < allowed < len(requests) - 200


def test_a_numeric_organisation_is_refused_with_a_reason(engines):
    """The old policies let this through (their refusal message failed to build)."""
    _, shipped = engines
    request = {"subject": {"id": "g", "role": "governance", "organisation": 5}, "action": "audit.verify",
               "time": "2026-11-22T10:00:00Z"}
    decision = shipped.decide(request)
    assert not decision.allow
    assert "The organisation '' is not known to this service." in decision.reasons


def test_an_unreadable_consent_expiry_is_refused(engines):
    """The old policies treated it as never expiring (the engine writes it as "invalid")."""
    _, shipped = engines
    request = {"subject": {"id": "u", "role": "adviser", "organisation": "csc-margate"},
               "action": "summary.request", "purpose": "employment_support", "time": "2026-11-22T10:00:00Z",
               "resource": {"person_key": PERSON, "categories": ["HOU"]},
               "consent": {"status": "active", "purposes": ["employment_support"], "categories": ["dwp", "HOU"],
                           "expires_at": "whenever", "person_key": PERSON}}
    decision = shipped.decide(request)
    assert not decision.allow
    assert decision.reasons == ["The consent record's expiry date is not a valid time."]
    request["consent"]["expires_at"] = "2027-06-01T00:00:00+00:00"
    assert shipped.decide(request).allow
