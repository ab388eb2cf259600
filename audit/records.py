"""The log's record format: one line per entry, with a checksum to spot torn writes.

    <canonical JSON {"event": {...}, "index": i, "leaf": "<hex>"}> TAB <crc32 hex> LF

Canonical JSON escapes every control character, so a record never contains a raw TAB
or LF and the line can be split without parsing. The CRC only detects torn or garbled
writes; tampering is caught by the leaf hashes and the signed checkpoints.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from audit.verifier import canonical_json, leaf_hash


class RecordError(ValueError):
    """A log line is not a well-formed record."""


@dataclass(frozen=True)
class Record:
    index: int
    event: dict
    leaf: bytes


def encode_record(index: int, event: dict) -> tuple[bytes, bytes]:
    """The line to append and the entry's leaf hash."""
    leaf = leaf_hash(event)
    body = canonical_json({"event": event, "index": index, "leaf": leaf.hex()})
    return body + b"\t" + b"%08x" % zlib.crc32(body) + b"\n", leaf


def decode_record(line: bytes) -> Record:
    """Parse one line (with or without its LF); RecordError says what is wrong."""
    if line.endswith(b"\n"):
        line = line[:-1]
    body, sep, crc = line.rpartition(b"\t")
    if not sep or len(crc) != 8:
        raise RecordError("no checksum (torn or truncated record)")
    try:
        expected = int(crc, 16)
    except ValueError as exc:
        raise RecordError("checksum is not hex") from exc
    if zlib.crc32(body) != expected:
        raise RecordError("checksum mismatch (torn or altered record)")
    try:
        value = json.loads(body)
        return Record(int(value["index"]), value["event"], bytes.fromhex(value["leaf"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"record is not valid JSON with index/event/leaf: {exc}") from exc
