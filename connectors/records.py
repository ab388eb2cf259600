"""The shape every source reader yields, whatever the agency's format.

A reader turns one agency's native records (CSV rows, SQL rows, FHIR resources) into
`SourceRecord`s: raw identity fields under the standard names, plus coded barrier
indicators. Standardisation, validation and pseudonymisation happen after this, in one
place (`connectors.standardise`, `connectors.pseudonymise`), for every kind alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

# The standard identity fields (the csv kind's mapping targets).
IDENTITY_FIELDS = (
    "local_id",
    "nhs_number",
    "nino",
    "given_name",
    "middle_names",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address",
    "locality",
)


@dataclass(frozen=True)
class Indicator:
    """One coded fact that may evidence a barrier, e.g. ("housing.rent_arrears_weeks", 9)."""

    code: str  # "<source kind>.<indicator>", catalogue in docs/CONTRACTS.md
    value: str | int | float | bool | None
    date: date | None  # when it was last true / recorded


@dataclass
class SourceRecord:
    """One record as read from a source, before standardisation. Raw: never leaves the connector."""

    row_number: int  # 1-based position in the source (line, row or resource order)
    identity: dict[str, str | None]  # raw values under IDENTITY_FIELDS names
    indicators: list[Indicator] = field(default_factory=list)


@dataclass(frozen=True)
class RowReject:
    """A row the reader refuses before standardisation: wrong shape, wrong type, duplicate id.

    `field` names the source's own column or FHIR path ("(row)" when the whole row is
    malformed); `reason` says what is wrong without quoting the value (rejects stay at
    the source, but they are read by people who need not see identifiers).
    """

    row_number: int
    field: str
    reason: str


# Where a reader sends the rows it refuses (the extract writes them to rejects.csv).
RejectSink = Callable[[RowReject], None]
