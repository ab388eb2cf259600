"""Strict CSV reading shared by every CSV reader (DWP, housing, the generic `csv` kind).

What the standard `csv` module lets through silently, and what this module does instead:

- an unterminated quote swallows the rest of the file into one field: a clear error
  naming the row and the line where the quote opened;
- bad quoting (`"ab"c`): a clear error naming the row and line;
- a duplicated or unnamed header column (a DictReader keeps the last one): an error naming
  the columns;
- a row with more or fewer values than the header: a reject of that row (the DictReader
  pads with None or hides extras under a None key); a row that repeats the header (two
  files joined together): a reject;
- bytes that are not UTF-8: an error naming the row, the line and the column (the text
  decoder fails a whole buffer ahead, so its error named the wrong row). A wrongly encoded
  file is an error, not a few rejects: rejecting only the rows with accented names would
  drop people by the spelling of their name.

Row numbers count data rows from 1 (the header is row 0); blank lines are not rows.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from connectors.records import RejectSink, RowReject
from connectors.sources import SourceError

# A byte that is not UTF-8, as the "surrogateescape" error handler leaves it in the text.
_UNDECODED = re.compile("[\udc80-\udcff]")
# Rows are checked for undecodable bytes a chunk at a time (one regex search per chunk).
_CHUNK = 2048


@dataclass
class CsvTable:
    """An opened CSV file whose header has been checked."""

    path: Path
    header: list[str]
    handle: Any
    reader: Any  # csv.reader over the handle

    def close(self) -> None:
        self.handle.close()


def open_csv(path: Path) -> CsvTable:
    """Open `path` and check its header; SourceError naming the file when it cannot be used."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise SourceError(f"{path}: header (line 1): malformed CSV: {exc}") from exc
        if not header or not any(h.strip() for h in header):
            raise SourceError(f"{path}: empty file or no header row")
        if reader.line_num != 1:
            raise SourceError(f"{path}: header spans lines 1-{reader.line_num}: an unterminated quote?")
        if _UNDECODED.search("".join(header)):
            raise SourceError(f"{path}: not a readable UTF-8 CSV file: the header (line 1) holds bytes that are not UTF-8")
        header = [h.strip() for h in header]
        unnamed = [str(k + 1) for k, h in enumerate(header) if not h]
        if unnamed and len(header) > 1:
            raise SourceError(f"{path}: header: column(s) {', '.join(unnamed)} have no name")
        seen: dict[str, int] = {}
        duplicated = []
        for k, name in enumerate(header, start=1):
            if name in seen:
                duplicated.append(f"{name!r} (columns {seen[name]} and {k})")
            seen.setdefault(name, k)
        if duplicated:
            raise SourceError(f"{path}: header: duplicate column name(s) {', '.join(duplicated)}")
    except BaseException:
        handle.close()
        raise
    return CsvTable(path, header, handle, reader)


def data_rows(table: CsvTable, rejects: RejectSink) -> Iterator[tuple[int, list[str]]]:
    """(row number, values) of each well-formed data row, in file order.

    A row with the wrong number of values goes to `rejects`; malformed CSV (quoting) and
    undecodable bytes raise SourceError naming the row and line. Blank lines are skipped.
    """
    chunk: list[tuple[int, int, list[str]]] = []
    for item in _rows_with_lines(table, rejects):
        chunk.append(item)
        if len(chunk) >= _CHUNK:
            _check_decoded(table, chunk)
            for row_number, _, values in chunk:
                yield row_number, values
            chunk = []
    _check_decoded(table, chunk)
    for row_number, _, values in chunk:
        yield row_number, values


def _rows_with_lines(table: CsvTable, rejects: RejectSink) -> Iterator[tuple[int, int, list[str]]]:
    """(row number, first line, values) of rows with the header's width; others rejected."""
    path, reader, width = table.path, table.reader, len(table.header)
    header = table.header
    row_number = 0
    last_line = reader.line_num
    while True:
        first_line = last_line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(_malformed(path, row_number + 1, first_line, reader.line_num, exc)) from exc
        lines = reader.line_num - last_line
        last_line = reader.line_num
        if len(values) == width:
            row_number += 1
            if values[0].strip() == header[0] and [v.strip() for v in values] == header:
                # Two extracts concatenated: the second one's header is not a person.
                rejects(RowReject(row_number, "(row)", "repeats the header row (files joined together?)"))
                continue
            yield row_number, first_line, values
            continue
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # a blank line is not a row
        row_number += 1
        if lines > 1:
            raise SourceError(
                f"{path}: row {row_number} (lines {first_line}-{first_line + lines - 1}): a quoted "
                f"field runs over {lines} lines and the row has {len(values)} values for "
                f"{width} columns: an unterminated quote?"
            )
        rejects(RowReject(row_number, "(row)", f"{len(values)} values, the header has {width} columns"))


def _malformed(path: Path, row_number: int, first_line: int, line: int, exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return (
            f"{path}: row {row_number} (line {first_line}): unterminated quote: the quoted field "
            f"runs to the end of the file (line {line})"
        )
    if "field larger than field limit" in str(exc):
        return (
            f"{path}: row {row_number} (line {first_line}): a field runs past line {line} and over "
            f"{csv.field_size_limit()} characters: an unterminated quote?"
        )
    spans = f" (the row runs from line {first_line} to {line}: an unterminated quote?)" if line > first_line else ""
    return f"{path}: row {row_number} (line {first_line}): malformed CSV: {exc}{spans}"


def _check_decoded(table: CsvTable, chunk: list[tuple[int, int, list[str]]]) -> None:
    """SourceError naming the first row, line and column holding bytes that are not UTF-8."""
    if not chunk or not _UNDECODED.search("".join(chain.from_iterable(v for _, _, v in chunk))):
        return
    for row_number, line, values in chunk:
        for name, value in zip(table.header, values, strict=True):
            match = _UNDECODED.search(value)
            if match:
                byte = ord(match.group()) - 0xDC00
                raise SourceError(
                    f"{table.path}: row {row_number} (line {line}), column {name!r}: not UTF-8 text "
                    f"(byte 0x{byte:02X}); is the file in another encoding, e.g. Latin-1? "
                    "Convert it to UTF-8"
                )
