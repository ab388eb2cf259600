"""Writing the split extract: linkage, content, keymap, rejects and manifest, atomically.

Layout hygiene (the default scheme "v2"; docs/PRIVACY.md):
- refs are keyed per project and per source record: HMAC-SHA256(ref key, source | local id
  | n), n counting earlier rows of the same local id. A re-extract in one project gives a
  record the same ref (so entity ids survive); another project's refs are unrelated, and
  nobody inverts a ref without the key (which stays with the connector).
- rows are written in ref order, which is a keyed pseudo-random order: nothing about a
  row's position says where it was in the source. Batches go to 16 bucket files by the
  ref's first hex digit; each bucket is sorted and appended at the end (memory: 1/16 of
  the extract).
- content plaintexts are padded to a size class (`connectors.content.padded`).
- the manifest that travels lists hashes of what travels only (linkage and content);
  the keymap's and rejects' hashes, which would confirm a guess at the keymap, stay in
  `source.json`, which never leaves the source.
The "v1" scheme keeps the old layout (random refs, source order, no padding, every hash in
the manifest) so that the privacy benchmark can measure it.

Everything is written into a temporary directory beside the output directory and moved
into place only when complete (files fsynced, hashes in the manifest). An existing
complete output is replaced only by a new complete one: a failure at any point leaves the
old output as it was and removes the temporary directory.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import re
import secrets
import shutil
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.columnar import ColumnarEncoder, EncodedBatch, gc_paused
from connectors.content import SIZE_CLASSES, encrypt_batch, indicators_json
from connectors.files import (
    OutputBusy,
    make_tree_private,
    replace_dir_atomically,
    sha256_file,
    staging_dir,
)
from connectors.keys import KeyRing
from connectors.legacy_v1 import LINKAGE_COLUMNS as V1_LINKAGE_COLUMNS
from connectors.legacy_v1 import V1ColumnarEncoder, V1IdentityEncoder
from connectors.mapping import Mapping, MappingError
from connectors.native import ENGINES, NativeFailed, NativeSourceError, NativeUnavailable
from connectors.native import program as native_program
from connectors.native import run_extract as run_native
from connectors.native import unsupported_reason as native_unsupported
from connectors.parallel import encode_in_order
from connectors.pseudonymise import (
    LINKAGE_COLUMNS,
    EncodingSettings,
    IdentityEncoder,
    KeyedHash,
)
from connectors.records import RowReject
from connectors.sources import SourceError, effective_mapping, read_batches

SCHEMA_VERSION = 1
BATCH_SIZE = 20_000
FILES = ("linkage.parquet", "content.parquet", "keymap.parquet", "rejects.csv")
TRAVELLING_FILES = ("linkage.parquet", "content.parquet")
BUCKETS = 16
_GC_EVERY = 10  # batches between full collections while the GC is paused
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")



def linkage_schema(columns: tuple[str, ...]) -> pa.Schema:
    """ref (string), then int64 tokens / match keys and binary `clk_*` filters."""
    return pa.schema(
        [pa.field("ref", pa.string(), nullable=False)]
        + [pa.field(c, pa.binary() if c.startswith("clk_") else pa.int64()) for c in columns[1:]]
    )


LINKAGE_SCHEMA = linkage_schema(LINKAGE_COLUMNS)
V1_LINKAGE_SCHEMA = linkage_schema(V1_LINKAGE_COLUMNS)
CONTENT_SCHEMA = pa.schema([("ref", pa.string()), ("nonce", pa.binary()), ("ciphertext", pa.binary())])
KEYMAP_SCHEMA = pa.schema([("local_id", pa.string()), ("ref", pa.string())])


def skip_pyarrow_pandas_probe() -> None:
    """Let pyarrow settle, without importing pandas, that this process has no pandas objects.

    pyarrow imports pandas the first time it converts Python values (to recognise pandas
    objects), which costs a `joinedup extract` process about 0.4 s on a quiet machine and
    the extract never hands pyarrow a pandas object. pandas is hidden for that first
    conversion only: pyarrow then treats the probe as done, and anything that later asks
    pyarrow for pandas (`to_pandas`) still gets it, because that retries the import.
    """
    if "pandas" in sys.modules:
        return
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        pa.array([""])
    finally:
        sys.meta_path.remove(hide)


class _HidePandas:
    """An import finder under which `import pandas` fails as if it were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


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
    """The open output files of one extract in its temporary directory.

    With `buckets`, linkage/content/keymap rows go first to per-bucket files (by the ref's
    first hex digit); `finish()` sorts each bucket by ref and appends it to the final files.
    """

    def __init__(self, tmp: Path, schema: pa.Schema, buckets: bool):
        self.tmp, self.schema, self.buckets = tmp, schema, buckets
        # No dictionary pages: tokens, keys and filters hardly repeat (smaller and faster).
        self.linkage = pq.ParquetWriter(tmp / "linkage.parquet", schema, compression="zstd", use_dictionary=False)
        # Nonces and ciphertexts are random bytes: compressing them or looking for repeats
        # (dictionary encoding) only costs time.
        self.content = pq.ParquetWriter(
            tmp / "content.parquet", CONTENT_SCHEMA, use_dictionary=False,
            compression={"ref": "zstd", "nonce": "none", "ciphertext": "none"})
        self.keymap = pq.ParquetWriter(tmp / "keymap.parquet", KEYMAP_SCHEMA, compression="zstd")
        self._rejects_fh = (tmp / "rejects.csv").open("w", newline="")
        self.rejects = csv.writer(self._rejects_fh)
        self.rejects.writerow(["row_number", "field", "reason", "action"])
        self._bucket_writers: dict[int, tuple[Any, ...]] = {}

    def _bucket(self, b: int) -> tuple[Any, ...]:
        """Arrow IPC files (uncompressed: written once, read once, deleted)."""
        w = self._bucket_writers.get(b)
        if w is None:
            d = self.tmp / f".bucket-{b:02d}"
            d.mkdir()
            w = self._bucket_writers[b] = tuple(
                pa.ipc.new_file(str(d / name), schema)
                for name, schema in (("linkage", self.schema), ("content", CONTENT_SCHEMA), ("keymap", KEYMAP_SCHEMA)))
        return w

    def write(self, linkage: pa.Table, content: pa.Table, keymap: pa.Table) -> None:
        if not self.buckets:
            self.linkage.write_table(linkage)
            self.content.write_table(content)
            self.keymap.write_table(keymap)
            return
        bucket = _hex_digits(linkage.column("ref"))[:, 0]
        order = np.argsort(bucket, kind="stable")  # rows grouped by bucket, one take per table
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        tables = [t.take(pa.array(order)) for t in (linkage, content, keymap)]
        for b in np.flatnonzero(np.diff(bounds)).tolist():
            start, stop = int(bounds[b]), int(bounds[b + 1])
            for writer, table in zip(self._bucket(b), tables, strict=True):
                writer.write_table(table.slice(start, stop - start))

    def finish(self) -> None:
        """Append the buckets in order, each sorted by ref (so the files are in ref order)."""
        for b in sorted(self._bucket_writers):
            for w in self._bucket_writers[b]:
                w.close()
            d = self.tmp / f".bucket-{b:02d}"
            order = None  # the three files hold the same refs in the same order: sort once
            for name, writer in (("linkage", self.linkage), ("content", self.content), ("keymap", self.keymap)):
                with pa.memory_map(str(d / name)) as source:
                    table = pa.ipc.open_file(source).read_all()
                if order is None:
                    order = pa.array(_ref_order(table.column("ref")))
                writer.write_table(table.take(order))
                del table
            shutil.rmtree(d)
        self._bucket_writers.clear()

    def close(self) -> None:
        for ws in self._bucket_writers.values():
            for w in ws:
                w.close()
        self.linkage.close()
        self.content.close()
        self.keymap.close()
        self._rejects_fh.close()


_NIBBLE = np.zeros(256, dtype=np.uint64)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint64)
_REF_CHARS = 24  # refs are 12 bytes in lower-case hex


def _hex_digits(refs: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The refs' hex digits as values 0-15, one row per ref (n, 24)."""
    arr = refs.combine_chunks() if isinstance(refs, pa.ChunkedArray) else refs
    arr = arr.cast(pa.string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    if len(arr) and not (np.diff(offsets) == _REF_CHARS).all():
        raise ValueError("refs must be 24 hex digits")
    chars = data[offsets[0] : offsets[0] + _REF_CHARS * len(arr)].reshape(len(arr), _REF_CHARS)
    return _NIBBLE[chars]


def _ref_order(refs: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row order that sorts the refs (as `sort_by("ref")` does: equal-length lower-case hex
    sorts as the numbers it spells), from two integer keys instead of string compares."""
    digits = _hex_digits(refs)
    weights = np.uint64(16) ** np.arange(11, -1, -1, dtype=np.uint64)
    hi = digits[:, :12] @ weights  # the first 12 digits (48 bits), then the last 12
    lo = digits[:, 12:] @ weights
    return np.lexsort((lo, hi))


class _Refs:
    """Keyed refs: HMAC(ref key, source | local id | n), n = earlier rows with that local id."""

    def __init__(self, keyring: KeyRing, source_name: str):
        self._hash = KeyedHash(keyring.key("ref"))
        self._prefix = f"{source_name}|"
        self._seen: set[str] = set()
        self._repeats: dict[str, int] = {}

    def __call__(self, local_ids: list[str]) -> list[str]:
        seen, repeats = self._seen, self._repeats
        messages = []
        for lid in local_ids:
            if lid in seen:
                n = repeats[lid] = repeats.get(lid, 0) + 1
            else:
                seen.add(lid)
                n = 0
            messages.append(f"{self._prefix}{lid}|{n}".encode())
        digest = self._hash.digest
        return [digest(m)[:12].hex() for m in messages]


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
    workers: int | None = None,
    engine: str = "auto",
) -> dict[str, Any]:
    """Read, standardise, pseudonymise and write one split extract; returns the manifest.

    `workers` > 1 encodes batches in that many forked worker processes (connectors.parallel),
    or threads with the native engine (default: 1 process; one thread per core). `engine`: "python", "native" (the Go program,
    connectors.native; ExtractError when it cannot run this extract) or "auto" (native
    when it is built and supports the kind and settings, else python). Both write the same
    extract; the manifest's local companion, source.json, records which one ran.

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
    native = _use_native(engine, kind, str(input), settings)

    # The staging directory is owner-only; leftovers of killed runs are removed first.
    try:
        with staging_dir(out) as tmp:
            manifest = _write_extract(
                tmp, keyring, kind, source_name, str(input), mapping, settings, progress, batch_size,
                workers, native,
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
    workers: int | None,
    native: bool = False,
) -> dict[str, Any]:
    extract_id = uuid.uuid4().hex
    if native:
        try:
            counts = run_native(kind=kind, input=input, out_dir=tmp, source_name=source_name,
                                extract_id=extract_id, mapping=mapping, settings=settings, keyring=keyring,
                                batch_size=batch_size, workers=workers or os.cpu_count() or 1,
                                size_classes=SIZE_CLASSES, progress=progress).counts
        except NativeSourceError as exc:
            error = {"mapping": MappingError, "source": SourceError}.get(exc.category, ExtractError)
            raise error(str(exc)) from None
        except NativeFailed as exc:
            raise ExtractError(str(exc)) from None
    else:
        counts = _encode_and_write(tmp, keyring, kind, source_name, input, mapping, settings, progress,
                                   batch_size, workers or 1, extract_id)
    return _finish_extract(tmp, keyring, kind, source_name, settings, extract_id, counts,
                           "native" if native else "python")


def _use_native(engine: str, kind: str, input: str, settings: EncodingSettings) -> bool:
    """Whether this extract runs on the native engine (see pseudonymise_extract)."""
    if engine not in ENGINES:
        raise ExtractError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "python":
        return False
    reason = native_unsupported(kind, input, settings)
    if reason is None:
        try:
            native_program()
        except NativeUnavailable as exc:
            reason = str(exc)
    if reason is not None and engine == "native":
        raise ExtractError(f"the native engine cannot run this extract: {reason}")
    return reason is None


def _encode_and_write(
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
    extract_id: str,
) -> dict[str, int]:
    """The Python engine: read, encode and write the files; returns the counts."""
    content_key = keyring.content_key()
    counts = {"read": 0, "accepted": 0, "rejected": 0, "fields_dropped": 0}
    v1 = settings.scheme == "v1"
    schema = V1_LINKAGE_SCHEMA if v1 else linkage_schema(settings.linkage_columns)
    writers = _Writers(tmp, schema, buckets=not v1)
    refs_of = _random_refs if v1 else _Refs(keyring, source_name)
    classes = () if v1 else SIZE_CLASSES

    def make_encoder() -> ColumnarEncoder:
        if v1:
            return V1ColumnarEncoder(V1IdentityEncoder(keyring, settings), mapping)
        return ColumnarEncoder(IdentityEncoder(keyring, settings), mapping)

    def reject(r: RowReject) -> None:  # a row the reader refused: read, rejected, on file
        writers.rejects.writerow([r.row_number, r.field, r.reason, "rejected"])
        counts["read"] += 1
        counts["rejected"] += 1

    batches = read_batches(kind, input, mapping, batch_size, reject)
    source = (((rows, inds), cols) for rows, cols, inds in batches)
    # The cyclic GC off for the whole extract: readers (a FHIR bundle is hundreds of
    # thousands of dicts) and batches allocate many containers and make no cycles, and each
    # collection re-walked everything alive (measured: GC was most of reading NHS bundles).
    # A full collection every _GC_EVERY batches bounds what a stray cycle could hold.
    with gc_paused():
        try:
            for done, ((row_numbers, indicators), encoded) in enumerate(encode_in_order(source, make_encoder, workers), 1):
                if done % _GC_EVERY == 0:
                    gc.collect()
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
                        # A reader gives each row's indicators, or their JSON already.
                        kept = [ind if ind.__class__ is str else indicators_json(ind)
                                for ind in map(indicators.__getitem__, np.flatnonzero(encoded.accepted).tolist())]
                    refs = refs_of(encoded.local_ids)
                    _write_batch(writers, content_key, extract_id, source_name, kind, encoded, kept, refs, classes)
                if progress is not None:
                    progress(counts["read"])
            writers.finish()
        finally:
            writers.close()
    return counts


def _finish_extract(
    tmp: Path,
    keyring: KeyRing,
    kind: str,
    source_name: str,
    settings: EncodingSettings,
    extract_id: str,
    counts: dict[str, int],
    engine: str,
) -> dict[str, Any]:
    """Hashes, the manifest and (v2) the local source.json, all fsynced."""
    v1 = settings.scheme == "v1"
    files = {}
    for name in FILES:
        _fsync(tmp / name)
        files[name] = sha256_file(tmp / name)
    travelling = files if v1 else {k: v for k, v in files.items() if k in TRAVELLING_FILES}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "extract_id": extract_id,
        "source": source_name,
        "kind": kind,
        "linkage_project_id": keyring.project_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "key_ids": {k: v for k, v in keyring.key_ids().items() if k != "person"},
        "encoding": settings.manifest(),
        "layout": (
            {"refs": "random", "row_order": "source", "content_size_classes": []} if v1 else
            {"refs": "keyed", "row_order": "ref", "content_size_classes": list(SIZE_CLASSES)}),
        "counts": counts,
        "files": travelling,
    }
    manifest_path = tmp / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync(manifest_path)
    if not v1:
        # What stays at the source: the hashes of the keymap and rejects (they would confirm
        # a guess at the keymap if they travelled).
        local = {"extract_id": extract_id, "engine": engine,
                 "files": {k: files[k] for k in FILES if k not in TRAVELLING_FILES}}
        (tmp / "source.json").write_text(json.dumps(local, indent=2) + "\n")
        _fsync(tmp / "source.json")
    return manifest


def _random_refs(local_ids: list[str]) -> list[str]:
    """The v1 layout's refs: random, as secrets.token_hex(12) each, from one draw."""
    n = len(local_ids)
    pool = secrets.token_hex(12 * n)
    return [pool[24 * j : 24 * (j + 1)] for j in range(n)]


def _write_batch(
    writers: _Writers,
    content_key: bytes,
    extract_id: str,
    source_name: str,
    kind: str,
    encoded: EncodedBatch,
    indicator_json: list[str] | None,
    refs: list[str],
    classes: tuple[int, ...],
) -> None:
    columns = dict(encoded.columns)
    columns["ref"] = pa.array(refs, pa.string())
    linkage = pa.Table.from_pydict(columns, schema=writers.schema)
    # The area code is the postcode sector and district, never the full postcode.
    nonces, ciphertexts = encrypt_batch(
        content_key, extract_id, source_name, kind, refs, encoded.area_json, indicator_json, classes
    )
    content = pa.Table.from_pydict({"ref": refs, "nonce": nonces, "ciphertext": ciphertexts}, schema=CONTENT_SCHEMA)
    keymap = pa.Table.from_pydict({"local_id": encoded.local_ids, "ref": refs}, schema=KEYMAP_SCHEMA)
    writers.write(linkage, content, keymap)


def summary_line(manifest: dict[str, Any], out_dir: str | Path) -> str:
    c = manifest["counts"]
    return (
        f"extract {manifest['extract_id']} ({manifest['source']}, {manifest['kind']}): "
        f"read {c['read']}, accepted {c['accepted']}, rejected {c['rejected']}, "
        f"fields dropped {c['fields_dropped']} -> {out_dir}"
    )
