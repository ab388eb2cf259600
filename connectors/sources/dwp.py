"""DWP reader: the claimant extract (CSV) as DWP hands it over.

Columns: claimant_id, nino, forename, middle_names, surname, date_of_birth (DD/MM/YYYY),
sex, address_line_1, address_line_2, town, postcode, benefit_type (";"-separated),
claim_start_date, wca_outcome, wca_condition_group, wca_date, sanctions_12m,
unemployment_spells_5y, months_unemployed, lone_parent (Y/N), skills_need, extract_date.
"""

from __future__ import annotations

from collections.abc import Iterator

from connectors.mapping import Mapping, mapping_from_dict
from connectors.records import Indicator, RejectSink, SourceRecord
from connectors.sources._agency_csv import iso_date, number, read_csv, read_csv_batches, yes

DEFAULT_MAPPING: Mapping = mapping_from_dict(
    {
        "identity": {
            "local_id": "claimant_id",
            "nino": "nino",
            "given_name": "forename",
            "middle_names": "middle_names",
            "family_name": "surname",
            "date_of_birth": {"column": "date_of_birth", "format": "%d/%m/%Y"},
            "sex": "sex",
            "postcode": "postcode",
            "address": ["address_line_1", "address_line_2"],
            "locality": "town",
        }
    },
    "dwp default mapping",
)

INDICATOR_COLUMNS = (
    "benefit_type",
    "claim_start_date",
    "wca_outcome",
    "wca_condition_group",
    "wca_date",
    "sanctions_12m",
    "unemployment_spells_5y",
    "months_unemployed",
    "lone_parent",
    "skills_need",
    "extract_date",
)


def indicators(row: dict[str, str]) -> list[Indicator]:
    as_at = iso_date(row, "extract_date")
    claim_start = iso_date(row, "claim_start_date") or as_at
    wca_date = iso_date(row, "wca_date") or as_at
    out = [
        Indicator("dwp.benefit", b.strip(), claim_start)
        for b in (row.get("benefit_type") or "").split(";")
        if b.strip()
    ]
    if (row.get("wca_outcome") or "").strip():
        out.append(Indicator("dwp.wca_outcome", row["wca_outcome"].strip(), wca_date))
    if (row.get("wca_condition_group") or "").strip():
        out.append(Indicator("dwp.wca_condition", row["wca_condition_group"].strip(), wca_date))
    for column, code in (
        ("sanctions_12m", "dwp.sanctions_12m"),
        ("unemployment_spells_5y", "dwp.unemployment_spells_5y"),
        ("months_unemployed", "dwp.months_unemployed"),
    ):
        value = number(row, column)
        if value is not None:
            out.append(Indicator(code, value, as_at))
    if yes(row, "lone_parent"):
        out.append(Indicator("dwp.lone_parent", True, as_at))
    if (row.get("skills_need") or "").strip():
        out.append(Indicator("dwp.skills_need", row["skills_need"].strip(), as_at))
    return out


def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    """Stream the claimant extract at `input`; SourceError (before any record) if it is not one."""
    return read_csv(input, mapping, INDICATOR_COLUMNS, indicators, "DWP claimant", rejects)


def read_batches(input: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[tuple]:
    """The rows of `read` as batches of columns (the extract's path; see read_csv_batches)."""
    return read_csv_batches(input, mapping, INDICATOR_COLUMNS, INDICATOR_COLUMNS, indicators, "DWP claimant",
                            size, rejects)
