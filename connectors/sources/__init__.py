"""Source readers, one module per agency kind. Each module exposes

    DEFAULT_MAPPING: Mapping
    def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]

raises `SourceError` (naming the file and the problem) for an unreadable input or a wrong
schema before yielding anything, and for a malformed structure it cannot read past (an
unterminated quote, a file in the wrong encoding) naming the row. A row it can read past
but not use (wrong number of values, a value of the wrong type) goes to `rejects` with its
row number, field and reason, so that accepted + rejected = rows read.

The functions here add what every kind shares: a later row with an already seen local id
is rejected (`DuplicateIds`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from connectors.mapping import Mapping
from connectors.records import RejectSink, RowReject, SourceRecord

KINDS = ("dwp", "council", "nhs", "housing", "csv")
_MODULES = {"dwp": "dwp", "council": "council", "nhs": "nhs", "housing": "housing", "csv": "generic_csv"}


class SourceError(Exception):
    """The input cannot be read as this kind of source."""


def reader_module(kind: str):
    if kind not in _MODULES:
        raise SourceError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(f"connectors.sources.{_MODULES[kind]}")


def refuse_rejects(input: str) -> RejectSink:
    """A sink that turns the first reject into a SourceError: for callers that keep no
    rejects file, so that no row is ever dropped without anyone being told."""

    def refuse(reject: RowReject) -> None:
        raise SourceError(f"{input}: row {reject.row_number}, {reject.field}: {reject.reason}")

    return refuse


class DuplicateIds:
    """Rejects a row whose local id an earlier row of the same source already had.

    The first row keeps the id (its keymap entry is already written when a later one turns
    up); every later one is rejected, naming the row that had it first.
    """

    def __init__(self, rejects: RejectSink):
        self.rejects = rejects
        self.first_row: dict[str, int] = {}

    def fresh_batch(self, numbers: list[int], local_ids: list[str | None]) -> bool:
        """Record a whole batch at once when none of its ids is a duplicate (the usual case,
        done in C: one dict built, one disjointness test, one update); False, recording
        nothing, when some may be (then call `fresh` row by row). Readers give ids already
        stripped (the mapping's pickers strip), as `fresh` compares them."""
        batch = dict(zip(local_ids, numbers, strict=True))
        if len(batch) != len(local_ids) or None in batch or "" in batch:
            return False
        if not self.first_row.keys().isdisjoint(batch.keys()):
            return False
        self.first_row.update(batch)
        return True

    def fresh(self, row_number: int, local_id: str | None) -> bool:
        """True when the row may go on; False (and a reject) for a duplicate."""
        if local_id is None:
            return True  # no id: standardisation rejects it
        key = local_id.strip()
        if not key:
            return True
        first = self.first_row.setdefault(key, row_number)
        if first == row_number:
            return True
        self.rejects(RowReject(row_number, "local_id", f"duplicate local id (first at row {first})"))
        return False


def read_records(
    kind: str, input: str, override: Mapping | None = None, rejects: RejectSink | None = None
) -> Iterator[SourceRecord]:
    """Records of one source, with the kind's default mapping overridden field by field.

    Rows the reader refuses go to `rejects`; without one, the first refused row is a
    SourceError.
    """
    module = reader_module(kind)
    mapping = module.DEFAULT_MAPPING.merged(override)
    sink = rejects or refuse_rejects(input)
    records = module.read(input, mapping, sink)  # raises now for a bad input
    return _unique(records, DuplicateIds(sink))


def _unique(records: Iterator[SourceRecord], ids: DuplicateIds) -> Iterator[SourceRecord]:
    for record in records:
        if ids.fresh(record.row_number, record.identity.get("local_id")):
            yield record


# (row numbers, identity columns, per row its indicators, or their content JSON as
# `connectors.content.indicators_json` gives it, or None for a kind without indicators)
Batch = tuple[list[int], dict[str, list[str | None]], list[list[Any]] | list[str] | None]


def read_batches(kind: str, input: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[Batch]:
    """(row numbers, identity columns, indicators per row or None) per batch of the source,
    with `mapping` (already merged with the kind's default) and refused rows sent to `rejects`.

    A reader module with `read_batches` (the csv kind) hands over columns directly; any
    other reader's records are gathered into batches and turned into columns here.
    """
    from connectors.columnar import records_to_columns

    module = reader_module(kind)
    ids = DuplicateIds(rejects)
    if hasattr(module, "read_batches"):
        for numbers, columns, indicators in module.read_batches(input, mapping, size, rejects):
            yield _unique_batch(numbers, columns, indicators, ids)
        return
    batch: list[SourceRecord] = []
    for record in _unique(module.read(input, mapping, rejects), ids):
        batch.append(record)
        if len(batch) >= size:
            yield [r.row_number for r in batch], records_to_columns([r.identity for r in batch]), [r.indicators for r in batch]
            batch = []
    if batch:
        yield [r.row_number for r in batch], records_to_columns([r.identity for r in batch]), [r.indicators for r in batch]


def _unique_batch(
    numbers: list[int], columns: dict[str, list[str | None]], indicators: list[Any] | None, ids: DuplicateIds
) -> Batch:
    local_ids = columns.get("local_id")
    if local_ids is None:
        return numbers, columns, indicators
    if ids.fresh_batch(numbers, local_ids):
        return numbers, columns, indicators
    keep = [i for i, (n, v) in enumerate(zip(numbers, local_ids, strict=True)) if ids.fresh(n, v)]
    if len(keep) == len(numbers):
        return numbers, columns, indicators
    return (
        [numbers[i] for i in keep],
        {name: [values[i] for i in keep] for name, values in columns.items()},
        None if indicators is None else [indicators[i] for i in keep],
    )


def effective_mapping(kind: str, override: Mapping | None = None) -> Mapping:
    return reader_module(kind).DEFAULT_MAPPING.merged(override)
