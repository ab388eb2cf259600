"""Writing the split extract: linkage, content, keymap, rejects and manifest, atomically.

Everything is written into a temporary directory beside the output directory and moved
into place only when complete (files fsynced, hashes in the manifest). An existing
complete output is replaced only by a new complete one: a failure at any point leaves the
old output as it was and removes the temporary directory.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.columnar import ColumnarEncoder, EncodedBatch
from connectors.content import encrypt_batch, indicators_json
from connectors.files import (
    OutputBusy,
    make_tree_private,
    replace_dir_atomically,
    sha256_file,
    staging_dir,
)
from connectors.keys import KeyRing
from connectors.mapping import Mapping
from connectors.parallel import encode_in_order
from connectors.pseudonymise import (
    BLOCKING_COLUMNS,
    CLK_COLUMNS,
    TOKEN_COLUMNS,
    EncodingSettings,
    IdentityEncoder,
)
from connectors.records import RowReject
from connectors.sources import effective_mapping, read_batches

SCHEMA_VERSION = 1
BATCH_SIZE = 20_000
FILES = ("linkage.parquet", "content.parquet", "keymap.parquet", "rejects.csv")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

LINKAGE_SCHEMA = pa.schema(
    [pa.field("ref", pa.string(), nullable=False)]
    + [pa.field(c, pa.int64()) for c, _ in TOKEN_COLUMNS]
    + [pa.field(c, pa.binary()) for c in CLK_COLUMNS]
    + [pa.field(c, pa.int64()) for c in BLOCKING_COLUMNS]
)
CONTENT_SCHEMA = pa.schema([("ref", pa.string()), ("nonce", pa.binary()), ("ciphertext", pa.binary())])
KEYMAP_SCHEMA = pa.schema([("local_id", pa.string()), ("ref", pa.string())])


class ExtractError(Exception):
    """The extract cannot be written (bad arguments or output location)."""


def _indicator_doc(ind: Any) -> dict[str, Any]:
    d = ind.date
    return {"code": ind.code, "value": ind.value, "date": d.isoformat() if d is not None else None}




def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_replaceable(out: Path) -> None:
    """Refuse to replace something that is not a previous extract (never delete user data)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExtractError(f"{out}: exists and is not a directory")
    if any(out.iterdir()) and not (out / "manifest.json").exists():
        raise ExtractError(f"{out}: exists, is not empty and holds no extract; not replacing it")




class _Writers:
    """The open output files of one extract in its temporary directory."""

    def __init__(self, tmp: Path):
        self.linkage = pq.ParquetWriter(tmp / "linkage.parquet", LINKAGE_SCHEMA, compression="zstd")
        self.content = pq.ParquetWriter(tmp / "content.parquet", CONTENT_SCHEMA, compression="zstd")
        self.keymap = pq.ParquetWriter(tmp / "keymap.parquet", KEYMAP_SCHEMA, compression="zstd")
        self._rejects_fh = (tmp / "rejects.csv").open("w", newline="")
        self.rejects = csv.writer(self._rejects_fh)
        self.rejects.writerow(["row_number", "field", "reason", "action"])

    def close(self) -> None:
        self.linkage.close()
        self.content.close()
        self.keymap.close()
        self._rejects_fh.close()


def pseudonymise_extract(
    keyring: KeyRing,
    kind: str,
    source_name: str,
    input: str,
    mapping_override: Mapping | None,
    out_dir: str | Path,
    settings: EncodingSettings | dict | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
    workers: int = 1,
) -> dict[str, Any]:
    """Read, standardise, pseudonymise and write one split extract; returns the manifest.

    `workers` > 1 encodes batches in that many forked worker processes (connectors.parallel).

    Raises SourceError / MappingError (input unreadable, wrong schema, mapped column
    missing) or ExtractError, with nothing written to `out_dir`.
    """
    if not _SOURCE_NAME.match(source_name or ""):
        raise ExtractError(f"source name {source_name!r}: use letters, digits, '.', '_', '-' (max 64)")
    if not isinstance(settings, EncodingSettings):
        settings = EncodingSettings.from_dict(settings)
    out = Path(out_dir).absolute()
    _check_replaceable(out)
    mapping = effective_mapping(kind, mapping_override)

    # The staging directory is owner-only; leftovers of killed runs are removed first.
    try:
        with staging_dir(out) as tmp:
            manifest = _write_extract(
                tmp, keyring, kind, source_name, str(input), mapping, settings, progress, batch_size,
                workers,
            )
            make_tree_private(tmp)  # files 0600 (pyarrow and csv write with the umask's modes)
            replace_dir_atomically(tmp, out)
    except OutputBusy as exc:
        raise ExtractError(str(exc)) from exc
    return manifest


def _write_extract(
    tmp: Path,
    keyring: KeyRing,
    kind: str,
    source_name: str,
    input: str,
    mapping: Mapping,
    settings: EncodingSettings,
    progress: Callable[[int], None] | None,
    batch_size: int,
    workers: int,
) -> dict[str, Any]:
    extract_id = uuid.uuid4().hex
    content_key = keyring.content_key()
    counts = {"read": 0, "accepted": 0, "rejected": 0, "fields_dropped": 0}
    writers = _Writers(tmp)

    def make_encoder() -> ColumnarEncoder:
        return ColumnarEncoder(IdentityEncoder(keyring, settings), mapping)

    def reject(r: RowReject) -> None:  # a row the reader refused: read, rejected, on file
        writers.rejects.writerow([r.row_number, r.field, r.reason, "rejected"])
        counts["read"] += 1
        counts["rejected"] += 1

    batches = read_batches(kind, input, mapping, batch_size, reject)
    source = (((rows, inds), cols) for rows, cols, inds in batches)
    try:
        for (row_numbers, indicators), encoded in encode_in_order(source, make_encoder, workers):
            for i, problems in encoded.problems.items():
                rejected = not encoded.accepted[i]
                action = "rejected" if rejected else "field_dropped"
                writers.rejects.writerows(
                    [row_numbers[i], p.field, p.reason, action] for p in problems
                )
                if not rejected:
                    counts["fields_dropped"] += len(problems)
            n_accepted = len(encoded.local_ids)
            counts["read"] += len(row_numbers)
            counts["accepted"] += n_accepted
            counts["rejected"] += len(row_numbers) - n_accepted
            if n_accepted:
                kept = None
                if indicators is not None:
                    kept = [indicators_json(indicators[i]) for i in np.flatnonzero(encoded.accepted)]
                _write_batch(writers, content_key, extract_id, source_name, kind, encoded, kept)
            if progress is not None:
                progress(counts["read"])
    finally:
        writers.close()

    files = {}
    for name in FILES:
        _fsync(tmp / name)
        files[name] = sha256_file(tmp / name)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "extract_id": extract_id,
        "source": source_name,
        "kind": kind,
        "linkage_project_id": keyring.project_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "key_ids": {k: v for k, v in keyring.key_ids().items() if k != "person"},
        "encoding": settings.manifest(),
        "counts": counts,
        "files": files,
    }
    manifest_path = tmp / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync(manifest_path)
    return manifest


def _write_batch(
    writers: _Writers,
    content_key: bytes,
    extract_id: str,
    source_name: str,
    kind: str,
    encoded: EncodedBatch,
    indicator_json: list[str] | None,
) -> None:
    n = len(encoded.local_ids)
    # Random refs, as secrets.token_hex(12) each, from one draw.
    pool = secrets.token_hex(12 * n)
    refs = [pool[24 * j : 24 * (j + 1)] for j in range(n)]
    columns = dict(encoded.columns)
    columns["ref"] = pa.array(refs, pa.string())
    writers.linkage.write_table(pa.Table.from_pydict(columns, schema=LINKAGE_SCHEMA))

    # The area code is the postcode sector and district, never the full postcode.
    nonces, ciphertexts = encrypt_batch(
        content_key, extract_id, source_name, kind, refs, encoded.area_json, indicator_json
    )
    writers.content.write_table(
        pa.Table.from_pydict({"ref": refs, "nonce": nonces, "ciphertext": ciphertexts}, schema=CONTENT_SCHEMA)
    )
    writers.keymap.write_table(
        pa.Table.from_pydict({"local_id": encoded.local_ids, "ref": refs}, schema=KEYMAP_SCHEMA)
    )


def summary_line(manifest: dict[str, Any], out_dir: str | Path) -> str:
    c = manifest["counts"]
    return (
        f"extract {manifest['extract_id']} ({manifest['source']}, {manifest['kind']}): "
        f"read {c['read']}, accepted {c['accepted']}, rejected {c['rejected']}, "
        f"fields dropped {c['fields_dropped']} -> {out_dir}"
    )
