"""The `csv` kind: any CSV file, with a user's column mapping (TOML) to the identity fields.

Without a mapping, columns named like the standard identity fields (`given_name`,
`family_name`, `date_of_birth`, ...) are used. Without a `local_id` column, the row
number is the local id. Row numbers count data rows from 1 (the header is not counted).
This kind carries no indicators: its content rows hold only the area code.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from connectors.mapping import FieldSpec, Mapping, MappingError
from connectors.records import IDENTITY_FIELDS, SourceRecord
from connectors.sources import SourceError

DEFAULT_MAPPING = Mapping()


def _identity_named(header: list[str]) -> Mapping:
    return Mapping({name: FieldSpec((name,)) for name in IDENTITY_FIELDS if name in header})


def _open(path: Path, mapping: Mapping) -> tuple[Any, Any, list[str], Mapping]:
    """Open the file, check its header against the mapping; (file, csv reader, header, mapping)."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
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
    except BaseException:
        fh.close()
        raise
    return fh, reader, header, mapping


def _data_rows(path: Path, reader: Any, width: int) -> Iterator[tuple[int, list[str]]]:
    """(row number, values padded to the header's width) of each data row; blank lines skipped."""
    row_number = 0
    try:
        for values in reader:
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            row_number += 1
            if len(values) < width:
                values = values + [""] * (width - len(values))
            yield row_number, values
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: unreadable after data row {row_number}: {exc}") from exc


def read(input: str, mapping: Mapping) -> Iterator[SourceRecord]:
    """Records of a CSV file. Raises SourceError/MappingError before yielding anything."""
    path = Path(input)
    fh, reader, header, mapping = _open(path, mapping)
    with fh:
        specs = list(mapping.identity.items())
        has_local_id = "local_id" in mapping.identity
        for row_number, values in _data_rows(path, reader, len(header)):
            row = dict(zip(header, values, strict=False))
            identity = {name: spec.pick(row) for name, spec in specs}
            if not has_local_id:
                identity["local_id"] = str(row_number)
            yield SourceRecord(row_number, identity, [])


def _column_picker(spec: FieldSpec, header: list[str]) -> Callable[[list[list[str]]], list[str | None]]:
    """A function from a batch of rows (lists) to the field's column, as FieldSpec.pick does."""
    idx = [header.index(c) for c in spec.columns]
    if len(idx) == 1:
        j = idx[0]
        return lambda rows: [r[j].strip() or None for r in rows]

    def pick(rows: list[list[str]]) -> list[str | None]:
        out = []
        for r in rows:
            parts = [p for p in (r[j].strip() for j in idx) if p]
            out.append(" ".join(parts) if parts else None)
        return out

    return pick


def read_batches(
    input: str, mapping: Mapping, size: int
) -> Iterator[tuple[list[int], dict[str, list[str | None]], None]]:
    """The same rows as `read`, as batches of columns: (row numbers, identity columns, None).

    The extract's fast path: no dict per row, each identity column cut from the batch
    in one comprehension (values as `FieldSpec.pick` gives them).
    """
    path = Path(input)
    fh, reader, header, mapping = _open(path, mapping)
    with fh:
        pickers = {name: _column_picker(spec, header) for name, spec in mapping.identity.items()}
        rows: list[list[str]] = []
        numbers: list[int] = []

        def flush() -> tuple[list[int], dict[str, list[str | None]], None]:
            cols = {name: pick(rows) for name, pick in pickers.items()}
            if "local_id" not in cols:
                cols["local_id"] = [str(n) for n in numbers]
            return numbers, cols, None

        for row_number, values in _data_rows(path, reader, len(header)):
            rows.append(values)
            numbers.append(row_number)
            if len(rows) >= size:
                yield flush()
                rows, numbers = [], []
        if rows:
            yield flush()
