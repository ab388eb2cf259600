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

import codecs
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
    header: list[str]  # names stripped of spaces
    raw_header: list[str]  # as in the file: a data row equal to it repeats the header
    handle: Any
    reader: Any  # csv.reader over the handle
    utf8: bool  # the whole file decodes: rows need no check for undecodable bytes

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
        raw_header, header = header, [h.strip() for h in header]
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
    return CsvTable(path, header, raw_header, handle, reader, _decodes(path))


def _decodes(path: Path) -> bool:
    """Whether the whole file is UTF-8: one pass of the C decoder (~1 GB/s), so that only
    a file that is not pays for finding the row and column of its first bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def data_rows(table: CsvTable, rejects: RejectSink) -> Iterator[tuple[int, list[str]]]:
    """(row number, values) of each well-formed data row, in file order (see data_chunks)."""
    for numbers, rows in data_chunks(table, rejects, _CHUNK):
        yield from zip(numbers, rows, strict=True)


def data_chunks(table: CsvTable, rejects: RejectSink, size: int) -> Iterator[tuple[list[int], list[list[str]]]]:
    """(row numbers, rows) of up to `size` well-formed data rows at a time, in file order.

    A row with the wrong number of values, or repeating the header, goes to `rejects`;
    malformed CSV (quoting) and undecodable bytes raise SourceError naming the row and
    line. Blank lines are skipped. The loop is the extract's hot path: a well-formed row
    costs one length test, one list comparison and three appends.
    """
    path, reader, width, raw_header = table.path, table.reader, len(table.header), table.raw_header
    numbers: list[int] = []
    rows: list[list[str]] = []
    lines: list[int] = []  # first line of each row, for messages
    row_number = 0
    last = reader.line_num
    try:
        for values in reader:
            if len(values) == width and values != raw_header:
                row_number += 1
                numbers.append(row_number)
                rows.append(values)
                lines.append(last + 1)
                last = reader.line_num
                if len(rows) >= size:
                    _check_decoded(table, numbers, lines, rows)
                    yield numbers, rows
                    numbers, rows, lines = [], [], []
                continue
            first, spanned, last = last + 1, reader.line_num - last, reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line is not a row
            row_number += 1
            if len(values) == width:
                # Two extracts concatenated: the second one's header is not a person.
                rejects(RowReject(row_number, "(row)", "repeats the header row (files joined together?)"))
            elif spanned > 1:
                raise SourceError(
                    f"{path}: row {row_number} (lines {first}-{first + spanned - 1}): a quoted "
                    f"field runs over {spanned} lines and the row has {len(values)} values for "
                    f"{width} columns: an unterminated quote?"
                )
            else:
                rejects(RowReject(row_number, "(row)", f"{len(values)} values, the header has {width} columns"))
    except csv.Error as exc:
        raise SourceError(_malformed(path, row_number + 1, last + 1, reader.line_num, exc)) from exc
    if rows:
        _check_decoded(table, numbers, lines, rows)
        yield numbers, rows


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


def _check_decoded(table: CsvTable, numbers: list[int], lines: list[int], rows: list[list[str]]) -> None:
    """SourceError naming the first row, line and column holding bytes that are not UTF-8."""
    if table.utf8 or not _UNDECODED.search("".join(chain.from_iterable(rows))):
        return
    for row_number, line, values in zip(numbers, lines, rows, strict=True):
        for name, value in zip(table.header, values, strict=True):
            match = _UNDECODED.search(value)
            if match:
                byte = ord(match.group()) - 0xDC00
                raise SourceError(
                    f"{table.path}: row {row_number} (line {line}), column {name!r}: not UTF-8 text "
                    f"(byte 0x{byte:02X}); is the file in another encoding, e.g. Latin-1? "
                    "Convert it to UTF-8"
                )
