"""Source readers, one module per agency kind. Each module exposes

    DEFAULT_MAPPING: Mapping
    def read(input: str, mapping: Mapping) -> Iterator[SourceRecord]

and raises `SourceError` (naming the file and the problem) for an unreadable input or a
wrong schema, before yielding anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from connectors.mapping import Mapping
from connectors.records import SourceRecord

KINDS = ("dwp", "council", "nhs", "housing", "csv")
_MODULES = {"dwp": "dwp", "council": "council", "nhs": "nhs", "housing": "housing", "csv": "generic_csv"}


class SourceError(Exception):
    """The input cannot be read as this kind of source."""


def reader_module(kind: str):
    if kind not in _MODULES:
        raise SourceError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(f"connectors.sources.{_MODULES[kind]}")


def read_records(kind: str, input: str, override: Mapping | None = None) -> Iterator[SourceRecord]:
    """Records of one source, with the kind's default mapping overridden field by field."""
    module = reader_module(kind)
    mapping = module.DEFAULT_MAPPING.merged(override)
    return module.read(input, mapping)


def effective_mapping(kind: str, override: Mapping | None = None) -> Mapping:
    return reader_module(kind).DEFAULT_MAPPING.merged(override)
