"""The summary builder on decrypted content dicts (no other component needed)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from linkage.collation.summary import AdjustmentError, build_barrier_summary
from linkage.collation.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
TAX = load_taxonomy(ROOT / "joinedup" / "defaults" / "taxonomy.toml")
AS_OF = date(2026, 11, 22)


def row(kind: str, *indicators: tuple) -> dict:
    return {
        "ref": f"r-{kind}",
        "source": f"{kind}-thanet",
        "kind": kind,
        "area": {"postcode_sector": "CT9 1", "postcode_district": "CT9"},
        "indicators": [{"code": c, "value": v, "date": d} for c, v, d in indicators],
    }


PERSON = [
    row("nhs", ("nhs.secondary_mental_health", "active", "2026-09-01"),
        ("nhs.long_term_condition", "diabetes", "2026-02-01")),
    row("dwp", ("dwp.benefit", "UC", "2026-10-01"), ("dwp.wca_condition", "mental", "2026-03-10"),
        ("dwp.months_unemployed", 30, "2026-10-01")),
    row("housing", ("housing.rent_arrears_weeks", 5, "2026-08-15"),
        ("housing.eviction_notice", "s21", "2023-01-01")),  # too old to be current
]


def test_barriers_severities_evidence_and_last_seen():
    s = build_barrier_summary(PERSON, TAX, as_of=AS_OF, consent_receipt_id="rcpt-1",
                              policy_decision_id="dec-1")
    got = {b.code: (b.severity, b.evidenced_by, b.last_seen) for b in s.barriers}
    assert got == {
        "MH": (3, ("dwp", "nhs"), "2026-09-01"),
        "PH": (1, ("nhs",), "2026-02-01"),
        "FIN": (2, ("housing",), "2026-08-15"),
        "WRK": (3, ("dwp",), "2026-10-01"),
    }
    assert "HOU" not in got  # the eviction notice is outside the recency window
    assert s.multiple_disadvantage
    assert s.service_needs[0] == "mental health support"
    assert s.outcome_payment.tariff_gbp == 1000 + 200 + 300 + 700
    assert s.taxonomy_version == TAX.version
    assert (s.consent_receipt_id, s.policy_decision_id) == ("rcpt-1", "dec-1")


def test_json_holds_no_indicator_values_or_diagnoses():
    text = build_barrier_summary(PERSON, TAX, as_of=AS_OF).to_json()
    doc = json.loads(text)
    assert set(doc) == {
        "summary_id", "created_at", "taxonomy_version", "categories_in_scope", "barriers",
        "multiple_disadvantage", "service_needs", "outcome_payment", "consent_receipt_id",
        "policy_decision_id",
    }
    for leaked in ("diabetes", "active", "mental\"", "UC", "s21", "nhs.", "dwp.", "ref", "CT9"):
        assert leaked not in text.replace("\"ref\"", ""), leaked


def test_minimisation_to_categories_drops_everything_about_other_barriers():
    s = build_barrier_summary(PERSON, TAX, as_of=AS_OF, categories=["FIN", "HOU"])
    assert [b.code for b in s.barriers] == ["FIN"]
    assert s.categories_in_scope == ("HOU", "FIN")
    assert not s.multiple_disadvantage  # only one barrier in scope
    assert s.service_needs == ("debt and money advice",)
    assert s.outcome_payment.tariff_gbp == 300
    text = s.to_text(TAX)
    assert "mental" not in text
    assert "No record" in text and "HOU (unstable housing)" in text
    assert "NOT that there is no need" in text


def test_text_view_says_no_record_for_missing_barriers():
    text = build_barrier_summary([], TAX, as_of=AS_OF).to_text(TAX)
    assert "none on record" in text
    assert "CLV (care leaver)" in text


def test_adjustment_is_bounded_and_needs_a_reason():
    # tariff 2200: bound = min(25% = 550, 500) = 500
    ok = build_barrier_summary(PERSON, TAX, as_of=AS_OF, adjustment_gbp=-500,
                               adjustment_reason="already in housing support")
    assert ok.outcome_payment.total_gbp == 1700
    assert "adjustment GBP -500.00" in ok.to_text()
    with pytest.raises(AdjustmentError, match="exceeds the approved bound of GBP 500.00"):
        build_barrier_summary(PERSON, TAX, as_of=AS_OF, adjustment_gbp=501, adjustment_reason="x")
    with pytest.raises(AdjustmentError, match="needs a reason"):
        build_barrier_summary(PERSON, TAX, as_of=AS_OF, adjustment_gbp=100)
    small = [row("housing", ("housing.rent_arrears_weeks", 2, "2026-08-15"))]  # tariff 150
    with pytest.raises(AdjustmentError, match="GBP 37.50"):
        build_barrier_summary(small, TAX, as_of=AS_OF, adjustment_gbp=40, adjustment_reason="x")


def test_to_dict_is_what_dataclasses_asdict_gives():
    from dataclasses import asdict

    summary = build_barrier_summary(PERSON, TAX, as_of=AS_OF, consent_receipt_id="rcpt-1",
                                    policy_decision_id="dec-1")
    assert summary.barriers  # a summary with findings, so the nested parts are compared
    assert summary.to_dict() == asdict(summary)
    assert type(summary.to_dict()["barriers"]) is tuple
