"""Shared CSV plumbing for the agency readers whose extract is a CSV file (DWP, housing).

Opening, the header and the mapped columns are checked eagerly, so a bad input raises
`SourceError` before a single record is yielded; rows are then streamed one at a time.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path

from connectors.mapping import Mapping, MappingError
from connectors.records import IDENTITY_FIELDS, Indicator, SourceRecord
from connectors.sources import SourceError

RowIndicators = Callable[[dict[str, str]], list[Indicator]]


def identity_picker(mapping: Mapping) -> Callable[[dict], dict[str, str | None]]:
    """A faster `mapping.pick_identity` with exactly its semantics, filling every
    IDENTITY_FIELDS key (None when unmapped). Readers call it once per row, so it matters."""
    specs = [(name, spec.columns) for name, spec in mapping.identity.items()]
    template = dict.fromkeys(IDENTITY_FIELDS)

    def pick(row: dict) -> dict[str, str | None]:
        identity = template.copy()
        for name, columns in specs:
            if len(columns) == 1:
                value = row.get(columns[0])
                if value is None or value == "":
                    continue
                identity[name] = str(value).strip() or None
            else:
                parts = [str(row[c]).strip() for c in columns if row.get(c) not in (None, "")]
                identity[name] = " ".join(p for p in parts if p) or None
        return identity

    return pick


def read_csv(
    input: str,
    mapping: Mapping,
    required: Iterable[str],
    indicators: RowIndicators,
    kind: str,
) -> Iterator[SourceRecord]:
    path = Path(input)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise SourceError(f"{path}: not a readable CSV file: {exc}") from exc
    if not header:
        handle.close()
        raise SourceError(f"{path}: empty file (no header row)")
    missing = sorted(set(required) - set(header))
    if missing:
        handle.close()
        raise SourceError(f"{path}: not a {kind} extract: missing column(s) {', '.join(missing)}")
    try:
        mapping.check_columns(header, str(path))
    except MappingError as exc:
        handle.close()
        raise SourceError(str(exc)) from exc
    return _rows(path, handle, reader, mapping, indicators)


def _rows(path: Path, handle, reader: csv.DictReader, mapping: Mapping, indicators: RowIndicators) -> Iterator[SourceRecord]:
    pick = identity_picker(mapping)
    with handle:
        row_number = 0
        try:
            for row_number, row in enumerate(reader, start=1):
                yield SourceRecord(row_number, pick(row), indicators(row))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: row {row_number + 1}: unreadable: {exc}") from exc


def iso_date(value: str | None) -> date | None:
    """An ISO date column, or None when empty or not a date (indicator dates are advisory)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def number(value: str | None) -> int | float | str | None:
    """An integer or decimal count; None when empty; the raw text if it is not a number."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def yes(value: str | None) -> bool:
    return (value or "").strip().upper() in {"Y", "YES", "TRUE", "1"}
