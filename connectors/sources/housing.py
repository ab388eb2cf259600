"""Housing reader: a housing management system's tenancy export (CSV).

Columns: tenancy_ref, tenant_forename, tenant_surname, tenant_dob (DD/MM/YYYY),
ni_number, property_address, postcode, tenancy_start, rent_arrears_weeks,
temporary_accommodation (Y/N), homelessness_stage, eviction_notice, last_updated.
"""

from __future__ import annotations

from collections.abc import Iterator

from connectors.mapping import Mapping, mapping_from_dict
from connectors.records import Indicator, RejectSink, SourceRecord
from connectors.sources._agency_csv import iso_date, number, read_csv, read_csv_batches, yes

DEFAULT_MAPPING: Mapping = mapping_from_dict(
    {
        "identity": {
            "local_id": "tenancy_ref",
            "nino": "ni_number",
            "given_name": "tenant_forename",
            "family_name": "tenant_surname",
            "date_of_birth": {"column": "tenant_dob", "format": "%d/%m/%Y"},
            "postcode": "postcode",
            "address": "property_address",
        }
    },
    "housing default mapping",
)

INDICATOR_COLUMNS = (
    "rent_arrears_weeks",
    "temporary_accommodation",
    "homelessness_stage",
    "eviction_notice",
    "last_updated",
)


def indicators(row: dict[str, str]) -> list[Indicator]:
    as_at = iso_date(row, "last_updated")
    out: list[Indicator] = []
    arrears = number(row, "rent_arrears_weeks")
    if arrears is not None:
        out.append(Indicator("housing.rent_arrears_weeks", arrears, as_at))
    if yes(row, "temporary_accommodation"):
        out.append(Indicator("housing.temporary_accommodation", True, as_at))
    if (row.get("homelessness_stage") or "").strip():
        out.append(Indicator("housing.homelessness_application", row["homelessness_stage"].strip(), as_at))
    if (row.get("eviction_notice") or "").strip():
        out.append(Indicator("housing.eviction_notice", row["eviction_notice"].strip(), as_at))
    return out


def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    """Stream the tenancy export at `input`; SourceError (before any record) if it is not one."""
    return read_csv(input, mapping, INDICATOR_COLUMNS, indicators, "housing tenancy", rejects)


def read_batches(input: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[tuple]:
    """The rows of `read` as batches of columns (the extract's path; see read_csv_batches)."""
    return read_csv_batches(input, mapping, INDICATOR_COLUMNS, INDICATOR_COLUMNS, indicators, "housing tenancy",
                            size, rejects)
