"""The shipped taxonomy loads, covers the indicator catalogue, and bad files fail clearly."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path

import pytest

from linkage.collation.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "joinedup" / "defaults" / "taxonomy.toml"
DESIGN_CODES = ["MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "OFF", "WRK"]


def catalogue_codes() -> set[str]:
    """Indicator codes listed in docs/CONTRACTS.md's catalogue table."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    return set(re.findall(r"^\| `([a-z]+\.[a-z0-9_]+)` \|", text, flags=re.M))


def shipped_doc() -> dict:
    return tomllib.loads(SHIPPED.read_text())


def test_shipped_taxonomy_has_design_codes_and_covers_catalogue():
    tax = load_taxonomy(SHIPPED)
    assert list(tax.barriers) == DESIGN_CODES
    assert tax.version
    ruled = {r.indicator for r in tax.rules}
    catalogue = catalogue_codes()
    assert len(catalogue) >= 20
    # Every rule names a real catalogue code; every catalogue code evidences some barrier
    # except the WCA outcome, which needs its condition group to say which (documented).
    assert ruled <= catalogue, ruled - catalogue
    assert catalogue - ruled == {"dwp.wca_outcome"}, catalogue - ruled


def test_rule_conditions_equals_at_least_and_recency():
    tax = load_taxonomy(SHIPPED)
    arrears = {r.severity for r in tax.rules_for("housing.rent_arrears_weeks") if r.matches(5)}
    assert max(arrears) == 2
    assert not any(r.matches(0) for r in tax.rules_for("housing.rent_arrears_weeks"))
    assert any(r.matches("9") for r in tax.rules_for("housing.rent_arrears_weeks") if r.severity == 3)
    ta = tax.rules_for("housing.temporary_accommodation")[0]
    assert ta.matches(True) and ta.matches("true") and not ta.matches(False)
    smh = [r for r in tax.rules_for("nhs.secondary_mental_health") if r.matches("ACTIVE")]
    assert [r.severity for r in smh] == [3]
    old, today = date(2020, 1, 1), date(2026, 11, 22)
    assert not tax.is_current(smh[0], old, today)
    assert tax.is_current(smh[0], date(2026, 1, 1), today)
    care_leaver = tax.rules_for("council.care_leaver")[0]
    assert tax.is_current(care_leaver, old, today)  # recency_months = 0: never expires


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d["rules"].insert(0, {"indicator": "nhs.x", "barrier": "ZZZ", "severity": 2}), "rules[1] (nhs.x): barrier 'ZZZ'"),
        (lambda d: d["rules"][0].update(severity=4), "rules[1] (nhs.secondary_mental_health): severity"),
        (lambda d: d["rules"][0].update(at_least=3), "either equals or at_least"),
        (lambda d: d["barriers"]["MH"].update(tariff_gbp=[0, 500, 100, 900]), "barriers.MH.tariff_gbp: must not decrease"),
        (lambda d: d["barriers"]["MH"].update(tariff_gbp=[10, 500, 600, 900]), "severity 0"),
        (lambda d: d["adjustment"].update(max_fraction=2), "adjustment.max_fraction"),
        (lambda d: d.update(recency_months=-1), "recency_months"),
        (lambda d: d["rules"][2].update(typo=1), "unknown key(s): typo"),
    ],
)
def test_invalid_taxonomy_is_refused_with_a_clear_message(mutate, message):
    doc = shipped_doc()
    mutate(doc)
    with pytest.raises(TaxonomyError) as err:
        parse_taxonomy(doc, "tax.toml")
    assert str(err.value).startswith("tax.toml: ")
    assert message in str(err.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n")
    with pytest.raises(TaxonomyError, match="bad.toml: invalid TOML"):
        load_taxonomy(bad)
