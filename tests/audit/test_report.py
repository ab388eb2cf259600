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


# --- the whole-ledger report kept up to date as entries are appended -----------------------
def _without_clock(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "generated_at"}


def test_whole_ledger_report_follows_appends_and_matches_a_full_scan(events, signing_key):
    from audit import whole_ledger_report

    first = whole_ledger_report(events)
    assert _without_clock(first) == _without_clock(build_report(events, None, None))
    first["consent"]["withdrawals"][0]["stopped"].clear()  # a caller's edit changes nothing
    # A withdrawal, then a refusal about that person: the refusal is counted as stopped by
    # the withdrawal that came before it, as a full scan counts it.
    events.append_many([
        {"type": "consent.withdrawn", "time": "2026-12-06T09:00:00Z",
         "actor": actor("adviser", "csc-margate"), "person_key": P3, "receipt_id": "r3"},
        decision("2026-12-06T10:00:00Z", P3, False),
        decision("2026-12-06T11:00:00Z", P1, False),
        {"type": "summary.disclosed", "time": "2026-12-07T10:00:00Z",
         "actor": actor("adviser", "csc-ramsgate"), "person_key": P2,
         "purpose": "employment_support"},
    ])  # fmt: skip
    second = whole_ledger_report(events)
    assert _without_clock(second) == _without_clock(build_report(events, None, None))
    assert second["consent"]["withdrawn"] == 2 and second["denials"]["total"] == 5
    assert [w["requests_stopped"] for w in second["consent"]["withdrawals"]] == [3, 1]
    assert second["accesses"]["by_organisation"]["csc-ramsgate"] == 1


class _ListLedger:
    """What ReportIndex reads of a ledger: events from a position, the size, get by id."""

    def __init__(self, events: list[dict]) -> None:
        self.entries = [{**e, "event_id": f"ev-{i:012d}-aaaaaaaa"} for i, e in enumerate(events)]

    def events(self, start: int = 0):
        return iter(self.entries[start:])

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, event_id: str) -> dict:
        found = [e for e in self.entries if e["event_id"] == event_id]
        if not found:
            raise KeyError(event_id)
        return found[0]


def test_report_index_folds_again_when_the_entries_it_folded_are_gone():
    from audit.report import ReportIndex

    ledger = _ListLedger([decision(f"2026-11-0{i}T10:00:00Z", P1, False) for i in range(1, 4)])
    index = ReportIndex()
    assert index.report(ledger)["denials"]["total"] == 3
    # Cut to two entries and another appended: the same size, but not the entries folded.
    ledger.entries = ledger.entries[:2] + [{**decision("2026-11-09T10:00:00Z", P2, True),
                                            "event_id": "ev-000000000002-bbbbbbbb"}]
    assert index.report(ledger)["denials"]["total"] == 2
    ledger.entries = ledger.entries[:1]  # shorter than what was folded
    assert index.report(ledger)["denials"]["total"] == 1
