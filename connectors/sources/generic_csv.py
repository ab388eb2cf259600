"""The `csv` kind: any CSV file, with a user's column mapping (TOML) to the identity fields.

Without a mapping, columns named like the standard identity fields (`given_name`,
`family_name`, `date_of_birth`, ...) are used. Without a `local_id` column, the row
number is the local id. Row numbers count data rows from 1 (the header is not counted).
This kind carries no indicators: its content rows hold only the area code.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from connectors.mapping import Mapping, MappingError
from connectors.records import IDENTITY_FIELDS, SourceRecord
from connectors.sources import SourceError

DEFAULT_MAPPING = Mapping()


def _identity_named(header: list[str]) -> Mapping:
    from connectors.mapping import FieldSpec

    return Mapping({name: FieldSpec((name,)) for name in IDENTITY_FIELDS if name in header})


def read(input: str, mapping: Mapping) -> Iterator[SourceRecord]:
    """Records of a CSV file. Raises SourceError/MappingError before yielding anything."""
    path = Path(input)
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc
        if not header or not any(h.strip() for h in header):
            raise SourceError(f"{path}: empty file or no header row")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise SourceError(f"{path}: duplicate column names in the header")
        if not mapping.identity:
            mapping = _identity_named(header)
            if len(mapping.identity) <= 1:
                raise SourceError(
                    f"{path}: no identity columns found (expected columns named like "
                    f"{', '.join(IDENTITY_FIELDS[1:])}, or give --mapping)"
                )
        try:
            mapping.check_columns(header, str(path))
        except MappingError as exc:
            raise SourceError(str(exc)) from exc
        specs = list(mapping.identity.items())
        has_local_id = "local_id" in mapping.identity
        width = len(header)
        row_number = 0
        try:
            for values in reader:
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                row_number += 1
                if len(values) < width:
                    values = values + [""] * (width - len(values))
                row = dict(zip(header, values, strict=False))
                identity = {name: spec.pick(row) for name, spec in specs}
                if not has_local_id:
                    identity["local_id"] = str(row_number)
                yield SourceRecord(row_number, identity, [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: unreadable after data row {row_number}: {exc}") from exc
