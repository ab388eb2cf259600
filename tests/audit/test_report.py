"""Governance report and subject access over a ledger of realistic events."""

from __future__ import annotations

import pytest

from audit import ReportError, build_report, render_report_html, subject_access

P1, P2, P3 = "a1" * 32, "b2" * 32, "c3" * 32


def actor(role: str, org: str) -> dict:
    return {"id": f"{role}-1", "role": role, "organisation": org}


def decision(time: str, person: str, allow: bool, org: str = "csc-margate", reasons=None) -> dict:
    return {
        "type": "policy.decision", "time": time, "actor": actor("adviser", org),
        "decision_id": f"d-{time}", "action": "summary.request", "purpose": "employment_support",
        "allow": allow, "reasons": reasons or (["allowed"] if allow else ["consent withdrawn"]),
        "person_key": person,
    }  # fmt: skip


@pytest.fixture
def events(ledger):
    ledger.append_many([
        {"type": "linkage.run", "time": "2026-11-01T09:00:00Z", "actor": actor("data_officer", "lu"),
         "run_id": "run-1", "entities": 120},
        {"type": "extract.ingested", "time": "2026-11-01T08:00:00Z",
         "actor": actor("data_officer", "lu"), "extract_id": "x1", "source": "dwp-thanet"},
        {"type": "consent.granted", "time": "2026-11-02T09:00:00Z", "actor": actor("adviser", "csc-margate"),
         "person_key": P1, "receipt_id": "r1", "purposes": ["employment_support"]},
        decision("2026-11-02T10:00:00Z", P1, True),
        {"type": "summary.disclosed", "time": "2026-11-02T10:00:01Z", "actor": actor("adviser", "csc-margate"),
         "person_key": P1, "purpose": "employment_support", "categories": ["MH"]},
        {"type": "summary.disclosed", "time": "2026-11-03T10:00:01Z", "actor": actor("adviser", "csc-margate"),
         "person_key": P2, "purpose": "employment_support"},
        {"type": "referral.read", "time": "2026-11-04T10:00:00Z", "actor": actor("provider", "prov-a"),
         "person_key": P1, "purpose": "employment_support", "referral_id": "ref-1"},
        {"type": "consent.withdrawn", "time": "2026-11-05T09:00:00Z", "actor": actor("citizen", "self"),
         "person_key": P1, "receipt_id": "r1"},
        decision("2026-11-06T10:00:00Z", P1, False),
        decision("2026-11-06T11:00:00Z", P1, False, org="csc-ramsgate"),
        decision("2026-11-07T11:00:00Z", P3, False, reasons=["no data-sharing agreement"]),
        {"type": "summary.disclosed", "time": "2026-12-05T10:00:00Z", "actor": actor("adviser", "csc-margate"),
         "person_key": P3, "purpose": "employment_support"},
    ])  # fmt: skip
    return ledger


def test_report_counts(events):
    report = build_report(events, "2026-11-01", "2026-11-30")
    assert report["events"] == 11  # the December disclosure is outside the period
    assert report["accesses"]["total"] == 3
    assert report["accesses"]["by_organisation"] == {"csc-margate": 2, "prov-a": 1}
    assert report["accesses"]["by_role"] == {"adviser": 2, "provider": 1}
    assert report["accesses"]["by_day"]["2026-11-04"] == {"referral.read": 1}
    assert report["people_seen_by_organisation"] == {"csc-margate": 2, "prov-a": 1}
    assert report["decisions"] == {
        "by_action": {"summary.request": {"allowed": 1, "denied": 3}}, "allowed": 1, "denied": 3
    }
    assert report["denials"]["by_reason"] == {"consent withdrawn": 2, "no data-sharing agreement": 1}
    (withdrawal,) = report["consent"]["withdrawals"]
    assert withdrawal["receipt_id"] == "r1" and withdrawal["requests_stopped"] == 2
    assert {s["organisation"] for s in withdrawal["stopped"]} == {"csc-margate", "csc-ramsgate"}
    assert [r["run_id"] for r in report["link_runs"]] == ["run-1"]
    assert report["extracts_ingested_by_source"] == {"dwp-thanet": 1}
    # Pseudonymous keys are counted, never listed.
    assert P1 not in str(report)


def test_report_period_bounds(events):
    assert build_report(events, "2026-12-01", "2026-12-31")["accesses"]["total"] == 1
    assert build_report(events, "2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z")["events"] == 1
    with pytest.raises(ReportError, match="not an ISO"):
        build_report(events, "last week", None)


def test_html_is_self_contained(events):
    html = render_report_html(build_report(events, "2026-11-01", "2026-11-30"))
    assert html.count("<svg") >= 5
    assert "http" not in html and "<script" not in html and "src=" not in html
    assert "consent withdrawn" in html and "csc-ramsgate" in html


def test_subject_access_lists_every_disclosure_about_one_person(events):
    result = subject_access(events, P1)
    assert [e["type"] for e in result["disclosures"]] == ["summary.disclosed", "referral.read"]
    assert result["summary"]["organisations"] == ["csc-margate", "prov-a"]
    assert {e["type"] for e in result["other_events"]} == {
        "consent.granted", "consent.withdrawn", "policy.decision"
    }
    assert subject_access(events, "ff" * 32)["disclosures"] == []
