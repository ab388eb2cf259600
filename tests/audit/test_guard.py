"""The guard: identifiers found in free text and codes, not in ids and hashes; append redacts."""

from __future__ import annotations

import json

import pytest

from audit import EventRejected, Finding, check_event, find_identifiers, redact_identifiers
from audit.guard import prepare_event, scan_for_identifiers, text_reason
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event

VALID_NHS = "9434765919"  # a valid mod-11 check digit
INVALID_NHS = "9434765918"


@pytest.mark.parametrize(
    "fields,field,reason",
    [
        ({"purpose": "CT91AB"}, "purpose", "postcode"),
        ({"purpose": "ct9 1ab"}, "purpose", "postcode"),
        ({"barriers": ["MH", "AB123456C"]}, "barriers[1]", "National Insurance"),
        ({"barriers": ["MH", "ab 12 34 56 c"]}, "barriers[1]", "National Insurance"),
        ({"note": f"nhs {VALID_NHS[:3]}-{VALID_NHS[3:6]}-{VALID_NHS[6:]}"}, "note", "NHS number"),
        ({"categories": [int(VALID_NHS)]}, "categories[0]", "NHS number"),
        ({"local_id": VALID_NHS}, "local_id", "NHS number"),  # an id field that IS one
        ({"resource": {"provider": "lives at CT9 1AB"}}, "resource.provider", "postcode"),
    ],
)
def test_find_identifiers_names_the_field_and_reason_never_the_value(fields, field, reason):
    findings = find_identifiers(fields)
    assert [f.field for f in findings] == [field]
    assert reason in findings[0].reason
    text = json.dumps([f.to_dict() for f in findings]) + " ".join(map(str, findings))
    for value in ("CT91AB", "ct9 1ab", "CT9 1AB", "AB123456C", "ab 12 34 56 c", VALID_NHS[:3] + "-"):
        assert value not in text


def test_codes_and_pseudonymous_ids_are_not_identifiers():
    request = {
        "purpose": "employment_support",
        "barriers": ["MH", "HOU", "FIN", "SUB"],
        "provider": "lead-provider-1",
        "organisation": "csc-margate",
        "entity_id": f"e-{VALID_NHS}",  # ten digits inside an id: not an NHS number
        "person_key": "0" * 54 + VALID_NHS,  # ... nor inside a hash
        "decision_id": f"d-{VALID_NHS}",
        "extract_hash": VALID_NHS + "ab" * 27,
        "consent_ids": [f"r-{VALID_NHS}"],
        "count": int(INVALID_NHS),
    }
    assert find_identifiers(request) == []


def test_event_ids_are_never_mistaken_for_nhs_numbers(ledger):
    ledger.append_many([sample_event(i) for i in range(2000)])
    ids = [e["event_id"] for e in ledger.events()]
    # Not even as free text (e.g. quoted in a note): no 10-digit run.
    assert [i for i in ids if text_reason(f"see {i}")] == []
    # The old ids (ev-NNNNNNNNNN) were: about 1 in 11 passes the NHS check-digit test. That
    # is what `verify` used to report; such ids stored under event_id are now judged as ids.
    legacy = [f"ev-{i:010d}" for i in range(2000)]
    flagged = [i for i in legacy if text_reason(f"see {i}")]
    assert 100 < len(flagged) < 300
    assert all(scan_for_identifiers({"event_id": i, "refers_to_event_id": i}) is None for i in legacy)


def test_verify_reports_no_privacy_notice_for_a_clean_ledger(ledger):
    ledger.append_many([sample_event(i) for i in range(2000)])
    ledger.checkpoint()
    result = verify_ledger(ledger.dir, ledger.public_key_path.read_bytes(), checkpoint_every=10)
    assert result.ok, result.problems
    assert [n for n in result.notices if "privacy" in n] == []


def test_redact_identifiers_returns_a_redacted_copy_and_the_findings():
    fields = {"purpose": "CT91AB", "barriers": ["MH", "AB123456C"], "provider": "p1"}
    redacted, findings = redact_identifiers(fields)
    assert redacted == {"purpose": "[redacted]", "barriers": ["MH", "[redacted]"], "provider": "p1"}
    assert fields["purpose"] == "CT91AB"  # the input is not changed
    assert [f.field for f in findings] == ["purpose", "barriers[1]"]
    assert isinstance(findings[0], Finding)


def test_prepare_event_redacts_keys_values_and_marks_them():
    event = {**sample_event(0), "by_person": {"AB123456C": 1, "p-1": 2}, "given_name": "Alice",
             "purpose": "employment support for CT9 1AB"}
    stored = prepare_event(event)
    assert stored["by_person"] == {"[redacted key 1]": 1, "p-1": 2}
    assert stored["given_name"] == "[redacted]" and stored["purpose"] == "[redacted]"
    assert {r["field"] for r in stored["redacted"]} == {"by_person.[key 1]", "given_name", "purpose"}
    assert "AB123456C" not in json.dumps(stored) and "Alice" not in json.dumps(stored)
    assert stored["time"] == event["time"] and stored["actor"] == event["actor"]
    # An event with nothing to redact is stored as given, with no marker.
    assert prepare_event(sample_event(1)) == sample_event(1)


@pytest.mark.parametrize(
    "event",
    [
        {**sample_event(0), "note": object()},
        {**sample_event(0), "redacted": "purpose"},
        {**sample_event(0), "actor": {"id": "u1"}},
        [sample_event(0)],
    ],
)
def test_malformed_events_are_still_rejected(event):
    with pytest.raises(EventRejected):
        prepare_event(event)


def test_check_event_is_the_strict_form():
    check_event(sample_event(0))
    with pytest.raises(EventRejected, match="purpose: looks like a postcode"):
        check_event({**sample_event(0), "purpose": "CT91AB"})
