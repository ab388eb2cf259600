"""Column mappings: which source columns feed which standard identity field.

A mapping is data (TOML), validated on load:

    [identity]
    local_id = "rec_id"
    given_name = "given_name"
    date_of_birth = { column = "date_of_birth", format = "%Y%m%d" }
    postcode = { column = "postcode", validate = false }
    address = ["street_number", "address_1", "address_2"]

Each source kind ships a default mapping; a user's file overrides it field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from connectors.files import read_document
from connectors.records import IDENTITY_FIELDS


class MappingError(Exception):
    """A mapping file is unreadable or names something it should not."""


@dataclass(frozen=True)
class FieldSpec:
    columns: tuple[str, ...]  # joined with a space when several
    format: str | None = None  # strptime format for dates; None = try the common ones
    validate: bool = True  # False keeps a value whose format is not the UK one

    def pick(self, row: dict[str, Any]) -> str | None:
        parts = [str(row[c]).strip() for c in self.columns if row.get(c) not in (None, "")]
        parts = [p for p in parts if p]
        return " ".join(parts) if parts else None


@dataclass(frozen=True)
class Mapping:
    identity: dict[str, FieldSpec] = field(default_factory=dict)

    def columns(self) -> set[str]:
        return {c for spec in self.identity.values() for c in spec.columns}

    def merged(self, override: Mapping | None) -> Mapping:
        if override is None:
            return self
        return Mapping({**self.identity, **override.identity})

    def pick_identity(self, row: dict[str, Any]) -> dict[str, str | None]:
        return {name: spec.pick(row) for name, spec in self.identity.items()}

    def check_columns(self, available: set[str] | list[str], source: str) -> None:
        """Fail, naming the source, when a mapped column is not in the input."""
        missing = sorted(self.columns() - set(available))
        if missing:
            raise MappingError(f"{source}: mapped column(s) not found: {', '.join(missing)}")


def _parse_spec(name: str, value: Any, where: str) -> FieldSpec:
    if isinstance(value, str):
        return FieldSpec((value,))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return FieldSpec(tuple(value))
    if isinstance(value, dict):
        unknown = set(value) - {"column", "columns", "format", "validate"}
        if unknown:
            raise MappingError(f"{where}: identity.{name}: unknown key(s) {sorted(unknown)}")
        cols = value.get("columns", value.get("column"))
        if isinstance(cols, str):
            cols = [cols]
        if not cols or not all(isinstance(c, str) for c in cols):
            raise MappingError(f"{where}: identity.{name}: needs 'column' or 'columns'")
        fmt = value.get("format")
        if fmt is not None:
            _check_date_format(fmt, f"{where}: identity.{name}.format")
        validate = value.get("validate", True)
        if not isinstance(validate, bool):
            raise MappingError(f"{where}: identity.{name}.validate must be true or false")
        return FieldSpec(tuple(cols), fmt, validate)
    raise MappingError(f"{where}: identity.{name}: expected a column name, a list or a table")


def _check_date_format(fmt: Any, where: str) -> None:
    """A strptime format that can read back a date it wrote (year, month and day), so a
    mistyped format fails here, once, and not as a dropped date on every row."""
    if not isinstance(fmt, str) or not fmt.strip():
        raise MappingError(f"{where} must be a strptime format such as '%d/%m/%Y'")
    sample = date(1987, 11, 23)
    try:
        back = datetime.strptime(sample.strftime(fmt), fmt).date()
    except ValueError as exc:
        raise MappingError(f"{where} {fmt!r} is not a usable date format: {exc}") from None
    if back != sample:
        raise MappingError(f"{where} {fmt!r} does not hold a whole date (needs year, month and day)")


def mapping_from_dict(doc: dict[str, Any], where: str = "mapping") -> Mapping:
    unknown_tables = set(doc) - {"identity"}
    if unknown_tables:
        raise MappingError(f"{where}: unknown table(s) {sorted(unknown_tables)}; a mapping has only [identity]")
    identity = doc.get("identity")
    if not isinstance(identity, dict):
        raise MappingError(f"{where}: needs an [identity] table")
    unknown = set(identity) - set(IDENTITY_FIELDS)
    if unknown:
        raise MappingError(
            f"{where}: unknown identity field(s) {sorted(unknown)}; "
            f"known: {', '.join(IDENTITY_FIELDS)}"
        )
    return Mapping({name: _parse_spec(name, v, where) for name, v in identity.items()})


def load_mapping(path: Path) -> Mapping:
    doc = read_document(path, "toml", MappingError)
    return mapping_from_dict(doc, str(path))
