"""After the whole demo, no raw identifier of ANY source record appears in the audit ledger,
the ingested extracts, the link run or the overview page: the separation principle, tested on
everything the demo leaves outside the agencies' own folders."""

from __future__ import annotations

import re

import pytest

from connectors.sources import read_records

# What leaves the agencies: everything in the home except the synthetic sources themselves
# and the connectors' own outputs that stay at the source (keymap, rejects).
STAYS_AT_SOURCE = ("sources", "outgoing", "secrets")


def _identifier_values(root) -> set[str]:
    """Every distinctive raw identity value of every record of the four sources."""
    values: set[str] = set()
    for kind, path in (
        ("dwp", root / "sources" / "dwp_claimants.csv"),
        ("housing", root / "sources" / "housing_tenancies.csv"),
        ("nhs", root / "sources" / "nhs"),
        ("council", str(root / "sources" / "council.sqlite")),
    ):
        for record in read_records(kind, str(path)):
            for field, value in record.identity.items():
                if not value or field in ("local_id", "sex"):
                    continue
                value = value.strip()
                if field in ("given_name", "family_name", "middle_names"):
                    # Names of 5+ letters: shorter ones occur inside ordinary English words.
                    values.update(w for w in re.findall(r"[A-Za-z]{5,}", value))
                elif field in ("address", "locality"):
                    values.update(w for w in re.findall(r"\d+ [A-Za-z]+ [A-Za-z]+", value))
                else:  # dates, NINO, NHS number, postcode: the value as written
                    values.add(value)
                    if field == "postcode":
                        values.add(value.replace(" ", ""))
    return values


@pytest.mark.slow
def test_no_raw_identifier_leaves_the_sources_in_the_demo(demo_run):
    root, _ = demo_run
    values = _identifier_values(root)
    assert len(values) > 500  # the check is over real data, not an empty set
    words_in_product = {"Margate", "Broadstairs", "Ramsgate", "Thanet"}  # area names are not identifiers
    candidates = sorted((v for v in values - words_in_product if len(v) >= 5), key=len, reverse=True)
    # Whole values only: "Brown" the surname, not "yellowOrangeBrown" the chart colour scheme.
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, candidates)) + r")(?![A-Za-z0-9])"
    )
    scanned = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in STAYS_AT_SOURCE or path.suffix == ".duckdb":
            continue
        if path.suffix not in (".jsonl", ".json", ".html", ".csv", ".txt", ".toml"):
            continue
        if rel.parts[0] == "config":
            continue  # shipped configuration documents, not data
        text = path.read_text(errors="replace")
        scanned += 1
        found = pattern.search(text)
        if found:
            pytest.fail(f"raw identifier value {found.group(1)!r} found in {rel}")
    assert scanned >= 5
