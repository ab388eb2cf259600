"""The policy engines through their public interface: required decisions, obligations,
audit events, data validation, engine selection. The OPA-server adapter is tested against a
real OPA server in test_opa_server.py.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import shutil
from pathlib import Path

import pytest

from policies import (
    PolicyDataError,
    PolicyEngine,
    PolicyError,
    engine_from_settings,
    keyed_input_hash,
)
from policies.bundle import DATA_DIR, load_bundle

PERSON = "5f1c0a9e7b3d4c2a8e6f0b1d3c5a7e9f5f1c0a9e7b3d4c2a8e6f0b1d3c5a7e9f"
NOW = "2026-11-22T10:00:00Z"


def consent(**changes):
    base = {"status": "active", "purposes": ["employment_support"],
            "categories": ["dwp", "nhs", "council", "housing", "MH", "HOU"],
            "receipt_id": "r-1", "expires_at": "2027-11-22T10:00:00+00:00", "person_key": PERSON}
    base.update(changes)
    return base


def summary_request(**changes):
    base = {"subject": {"id": "u1", "role": "adviser", "organisation": "csc-margate"},
            "action": "summary.request", "purpose": "employment_support",
            "resource": {"person_key": PERSON, "sources": ["dwp", "nhs"], "categories": ["MH", "SUB", "HOU"]},
            "consent": consent(), "time": NOW}
    base.update(changes)
    return base


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine.embedded()


def test_adviser_with_consent_is_allowed_and_sub_is_removed(engine):
    d = engine.decide(summary_request())
    assert d.allow and d.reasons == []
    assert d.obligations["categories"] == ["HOU", "MH"]
    assert "SUB" not in d.obligations["categories"]
    assert d.obligations["withheld_categories"] == {"SUB": "not covered by the person's consent"}
    assert d.obligations["sources"] == ["dwp", "nhs"]


@pytest.mark.parametrize("consent_obj, reason", [
    ({"status": "none", "purposes": [], "categories": []}, "There is no record of this person's consent."),
    (consent(status="expired"), "This person's consent has expired."),
    (consent(expires_at="2026-11-22T09:59:59Z"), "This person's consent has expired."),
    (consent(purposes=["service_planning"]), "This person's consent does not cover the purpose 'employment_support'."),
    (consent(status="withdrawn"), "This person has withdrawn their consent."),
])
def test_adviser_without_valid_consent_is_denied(engine, consent_obj, reason):
    d = engine.decide(summary_request(consent=consent_obj))
    assert not d.allow
    assert reason in d.reasons
    assert d.obligations == {}


def test_provider_not_referred_is_denied(engine):
    req = summary_request(subject={"id": "p1", "role": "provider", "organisation": "provider-a"},
                          action="referral.read",
                          resource={"person_key": PERSON, "categories": ["HOU"], "referred_to": ["provider-b"]})
    d = engine.decide(req)
    assert not d.allow and d.reasons == ["Your organisation has not been referred this person."]
    req["resource"]["referred_to"] = ["provider-a"]
    assert engine.decide(req).allow


def test_governance_cannot_have_a_summary_but_can_read_area_counts(engine):
    gov = {"id": "g1", "role": "governance", "organisation": "governance-board"}
    d = engine.decide(summary_request(subject=gov))
    assert not d.allow
    assert any("never an individual's summary" in r for r in d.reasons)
    counts = engine.decide({"subject": gov, "action": "area_counts.read", "time": NOW})
    assert counts.allow
    assert counts.obligations["suppression_threshold"] == 8 and counts.obligations["rounding_base"] == 5


def test_expired_agreement_is_denied(engine):
    # Consent still valid in 2028; the shipped agreement ended on 2027-12-31.
    d = engine.decide(summary_request(time="2028-01-02T10:00:00Z",
                                      consent=consent(expires_at="2029-01-01T00:00:00Z")))
    assert not d.allow
    assert "The data-sharing agreement 'dsa-thanet-employment-2026' expired on 2027-12-31." in d.reasons


@pytest.mark.parametrize("changes", [
    {"subject": {"id": "u1", "role": "superuser", "organisation": "csc-margate"}},
    {"action": "summary.export"},
    {"subject": None},
    {"time": "not a time"},
])
def test_unknown_role_action_or_malformed_request_is_denied(engine, changes):
    d = engine.decide(summary_request(**changes))
    assert not d.allow and d.reasons


def test_non_dict_input_is_an_error(engine):
    with pytest.raises(PolicyError):
        engine.decide(["not", "an", "object"])


def test_data_officer_citizen_and_admin_rules(engine):
    officer = {"id": "d1", "role": "data_officer", "organisation": "linkage-unit"}
    for action in ("extract.ingest", "linkage.run", "linkage.report.read"):
        assert engine.decide({"subject": officer, "action": action, "time": NOW}).allow, action
    assert not engine.decide(summary_request(subject=officer)).allow
    citizen = {"id": "c1", "role": "citizen", "organisation": "public", "person_key": PERSON}
    own = {"subject": citizen, "action": "audit.subject_access", "resource": {"person_key": PERSON}, "time": NOW}
    assert engine.decide(own).allow
    other = copy.deepcopy(own)
    other["resource"]["person_key"] = "00" * 32
    assert not engine.decide(other).allow
    admin = {"id": "a1", "role": "admin", "organisation": "joinedup-ops"}
    assert engine.decide({"subject": admin, "action": "users.manage", "time": NOW}).allow


def test_time_zones_are_normalised(engine):
    # 2027-11-22T11:30+01:00 is 10:30Z, after the consent's expiry at 10:00Z.
    d = engine.decide(summary_request(time="2027-11-22T11:30:00+01:00"))
    assert not d.allow and "This person's consent has expired." in d.reasons


def test_audit_event_has_keyed_input_hash_and_no_raw_identifiers(engine):
    req = summary_request()
    d = engine.decide(req)
    key = b"k" * 32
    event = d.to_audit_event(key)
    assert event["type"] == "policy.decision"
    assert event["decision_id"] == d.decision_id and len(d.decision_id) == 32
    assert event["bundle_revision"] == engine.bundle_revision
    assert event["allow"] is True and event["person_key"] == PERSON
    assert event["actor"] == {"id": "u1", "role": "adviser", "organisation": "csc-margate"}
    assert event["input_hash"] == keyed_input_hash(key, d.input)
    assert event["input_hash"] != keyed_input_hash(b"x" * 32, d.input)
    unkeyed = hashlib.sha256(json.dumps(d.input, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert event["input_hash"] != unkeyed
    assert event["input_hash"] == hmac.new(key, json.dumps(d.input, sort_keys=True, separators=(",", ":")).encode(),
                                           hashlib.sha256).hexdigest()
    json.dumps(event)  # serialisable as a ledger line


def test_bundle_revision_changes_with_data(tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    before = load_bundle(None, data).revision
    doc = json.loads((data / "disclosure.json").read_text())
    doc["disclosure"]["suppression_threshold"] = 10
    (data / "disclosure.json").write_text(json.dumps(doc))
    changed = PolicyEngine.embedded(None, data)
    assert changed.bundle_revision != before
    gov = {"id": "g1", "role": "governance", "organisation": "governance-board"}
    assert changed.decide({"subject": gov, "action": "area_counts.read", "time": NOW}).obligations[
        "suppression_threshold"] == 10


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["agreements"]["dsa-thanet-employment-2026"].update(valid_to="31/12/2027"), "valid_to must be a date"),
    (lambda d: d["agreements"]["dsa-thanet-employment-2026"]["lawful_basis"].pop("digital_economy_act_2017"), "lawful_basis.digital_economy_act_2017"),
    (lambda d: d["agreements"]["dsa-thanet-employment-2026"]["parties"].append("nobody"), "unknown organisation 'nobody'"),
])
def test_invalid_agreement_data_is_refused_with_a_clear_message(tmp_path: Path, edit, message):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    doc = json.loads((data / "agreements.json").read_text())
    edit(doc)
    (data / "agreements.json").write_text(json.dumps(doc))
    with pytest.raises(PolicyDataError, match="agreements.json") as err:
        load_bundle(None, data)
    assert message in str(err.value)


def test_engine_from_settings():
    from policies import EmbeddedEngine
    from policies.wasm_engine import WasmEngine

    assert isinstance(engine_from_settings({}), WasmEngine)  # the default: compiled
    assert isinstance(engine_from_settings({"engine": "embedded"}), WasmEngine)
    assert isinstance(engine_from_settings({"engine": "wasm"}), WasmEngine)
    assert isinstance(engine_from_settings({"engine": "regopy"}), EmbeddedEngine)
    for name in ("embedded", "wasm", "regopy"):
        assert engine_from_settings({"engine": name}).decide(summary_request()).allow
    with pytest.raises(PolicyError, match="opa_url"):
        engine_from_settings({"engine": "opa", "opa_url": ""})
    with pytest.raises(PolicyError, match="must be one of 'embedded', 'wasm', 'regopy', 'opa'"):
        engine_from_settings({"engine": "fast"})
