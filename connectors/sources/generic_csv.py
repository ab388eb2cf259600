"""The `csv` kind: any CSV file, with a user's column mapping (TOML) to the identity fields.

Without a mapping, columns named like the standard identity fields (`given_name`,
`family_name`, `date_of_birth`, ...) are used. Without a `local_id` column, the row
number is the local id. Row numbers count data rows from 1 (the header is not counted);
a row with more or fewer values than the header is rejected (connectors.sources._strict_csv).
This kind carries no indicators: its content rows hold only the area code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from connectors.mapping import FieldSpec, Mapping, MappingError
from connectors.records import IDENTITY_FIELDS, RejectSink, SourceRecord
from connectors.sources import SourceError
from connectors.sources._strict_csv import CsvTable, data_chunks, data_rows, open_csv

DEFAULT_MAPPING = Mapping()


def _identity_named(header: list[str]) -> Mapping:
    return Mapping({name: FieldSpec((name,)) for name in IDENTITY_FIELDS if name in header})


def _open(path: Path, mapping: Mapping) -> tuple[CsvTable, Mapping]:
    """Open the file, check its header against the mapping; (table, mapping to use)."""
    table = open_csv(path)
    try:
        if not mapping.identity:
            mapping = _identity_named(table.header)
            if len(mapping.identity) <= 1:
                raise SourceError(
                    f"{path}: no identity columns found (expected columns named like "
                    f"{', '.join(IDENTITY_FIELDS[1:])}, or give --mapping)"
                )
        try:
            mapping.check_columns(table.header, str(path))
        except MappingError as exc:
            raise SourceError(str(exc)) from exc
    except BaseException:
        table.close()
        raise
    return table, mapping


def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    """Records of a CSV file. Raises SourceError before yielding anything for a bad header."""
    path = Path(input)
    table, mapping = _open(path, mapping)
    return _records(table, mapping, rejects)


def _records(table: CsvTable, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    with table.handle:
        specs = list(mapping.identity.items())
        has_local_id = "local_id" in mapping.identity
        for row_number, values in data_rows(table, rejects):
            row = dict(zip(table.header, values, strict=True))
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
    input: str, mapping: Mapping, size: int, rejects: RejectSink
) -> Iterator[tuple[list[int], dict[str, list[str | None]], None]]:
    """The same rows as `read`, as batches of columns: (row numbers, identity columns, None).

    The extract's fast path: no dict per row, each identity column cut from the batch
    in one comprehension (values as `FieldSpec.pick` gives them).
    """
    path = Path(input)
    table, mapping = _open(path, mapping)
    return _batches(table, mapping, size, rejects)


def _batches(
    table: CsvTable, mapping: Mapping, size: int, rejects: RejectSink
) -> Iterator[tuple[list[int], dict[str, list[str | None]], None]]:
    with table.handle:
        pickers = {name: _column_picker(spec, table.header) for name, spec in mapping.identity.items()}
        for numbers, rows in data_chunks(table, rejects, size):
            cols = {name: pick(rows) for name, pick in pickers.items()}
            if "local_id" not in cols:
                cols["local_id"] = [str(n) for n in numbers]
            yield numbers, cols, None
