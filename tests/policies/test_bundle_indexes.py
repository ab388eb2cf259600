"""The lookup tables derived from the policy data when a bundle loads (data.indexes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from policies import PolicyDataError, PolicyEngine
from policies.bundle import DATA_DIR, INDEX_DOCUMENT, derive_indexes, load_bundle

NOW = "2026-11-22T10:00:00Z"


def test_indexes_restate_the_documents():
    data = load_bundle().data
    indexes = data[INDEX_DOCUMENT]
    assert indexes == derive_indexes(data)
    grants = indexes["grants"]
    assert grants["adviser"]["summary.request"]["csc-margate"] == {"employment_support": True}
    assert "summary.request" not in grants["provider"]  # the role does not list it
    assert "governance-board" not in grants["adviser"]["summary.request"]  # wrong kind of organisation
    assert set(grants["provider"]["referral.read"]) == {"provider-a", "provider-b", "provider-c"}
    assert grants["governance"]["area_counts.read"]["governance-board"] == {"service_planning": True}
    assert indexes["agreements_for"]["provider-c"]["employment_support"] == {
        "dsa-thanet-pilot-2025": ["2025-01-01", "2025-12-31"]}
    assert set(indexes["agreements_for"]["csc-margate"]["employment_support"]) == {
        "dsa-thanet-employment-2026", "dsa-thanet-pilot-2025"}
    assert "employment_support" not in indexes["agreements_for"]["governance-board"]
    pilot = indexes["agreements"]["dsa-thanet-pilot-2025"]
    assert pilot["categories"] == dict.fromkeys(["HOU", "FIN", "SKL", "CAR", "WRK"], True)
    assert pilot["sources"] == {"dwp": True, "council": True}


def _copy_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    return data


def test_a_data_file_may_not_define_the_derived_document(tmp_path: Path):
    data = _copy_data(tmp_path)
    (data / "extra.json").write_text(json.dumps({INDEX_DOCUMENT: {}}))
    with pytest.raises(PolicyDataError, match="extra.json: 'indexes' is reserved"):
        load_bundle(None, data)


def test_role_lists_must_be_lists(tmp_path: Path):
    data = _copy_data(tmp_path)
    doc = json.loads((data / "roles.json").read_text())
    doc["roles"]["adviser"]["organisation_kinds"] = {"citizen_support": True}
    (data / "roles.json").write_text(json.dumps(doc))
    with pytest.raises(PolicyDataError, match="roles.adviser.organisation_kinds must be a list"):
        load_bundle(None, data)


def test_decisions_follow_the_data_through_the_indexes(tmp_path: Path):
    """Take summary.request away from advisers: the derived grant goes, the request is refused
    with the same reason the rules give."""
    data = _copy_data(tmp_path)
    doc = json.loads((data / "roles.json").read_text())
    doc["roles"]["adviser"]["actions"].remove("summary.request")
    (data / "roles.json").write_text(json.dumps(doc))
    engine = PolicyEngine.embedded(None, data)
    consent = {"status": "active", "purposes": ["employment_support"], "categories": ["dwp", "HOU"],
               "expires_at": "2027-11-22T10:00:00Z"}
    request = {"subject": {"id": "u", "role": "adviser", "organisation": "csc-margate"},
               "action": "summary.request", "purpose": "employment_support", "time": NOW,
               "resource": {"person_key": "p", "categories": ["HOU"]}, "consent": consent}
    decision = engine.decide(request)
    assert not decision.allow
    assert decision.reasons == ["A Citizen Support adviser may not request a person's barrier summary."]
    assert PolicyEngine.embedded().decide(request).allow
