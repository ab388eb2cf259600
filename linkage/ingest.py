"""Ingest: verify split extracts and register them for the linkage unit.

An extract is accepted only when its manifest's file hashes match, it belongs to this
linkage project (same project id and key ids as the home's keyring) and it has not been
ingested before. All extracts given in one call are verified before anything is copied
or registered, so a bad one leaves the store untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from connectors.files import StoreConnection, sha256_file
from linkage.clk import clk_struct_sql
from linkage.settings import (
    CLK_COLUMNS,
    FINGERPRINT_COLUMNS,
    OPTIONAL_KEY_COLUMNS,
    TOKEN_COLUMNS,
    V1_BLOCKING_COLUMNS,
    V1_CLK_COLUMNS,
    V1_FINGERPRINT_COLUMNS,
    V1_TOKEN_COLUMNS,
)

# What ingest keeps of an extract (the keymap and rejects stay at the source). A linkage-unit
# home keeps no content (`keep_content=False`): content goes to the collation store only.
KEPT_FILES = ("linkage.parquet", "content.parquet", "manifest.json")
LINKAGE_ONLY_FILES = ("linkage.parquet", "manifest.json")
CHECKED_KEY_IDS = ("token", "clk", "blocking", "content")

EXTRACTS_DDL = """
CREATE TABLE IF NOT EXISTS extracts (
    extract_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    ingested_at VARCHAR NOT NULL,
    manifest JSON NOT NULL,
    active BOOLEAN NOT NULL
)
"""


class IngestError(Exception):
    """An extract cannot be ingested (message names the extract and the reason)."""


@dataclass(frozen=True)
class IngestedExtract:
    extract_id: str
    source: str
    kind: str
    path: Path  # HOME/extracts/<source>/<extract_id>/

    @property
    def linkage_path(self) -> Path:
        return self.path / "linkage.parquet"




def read_manifest(extract_dir: Path) -> dict[str, Any]:
    path = Path(extract_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IngestError(f"{extract_dir}: no manifest.json (not a split extract)") from exc
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    for key in ("extract_id", "source", "kind", "linkage_project_id", "key_ids", "files"):
        if key not in manifest:
            raise IngestError(f"{path}: manifest has no {key!r}")
    return manifest


def verify_extract(
    extract_dir: Path, project_id: str, key_ids: dict[str, str], with_content: bool = True,
) -> dict[str, Any]:
    """Check one extract's manifest against its files and this project's public key ids
    (the content file only when it is to be kept; a linkage unit may receive none)."""
    extract_dir = Path(extract_dir)
    manifest = read_manifest(extract_dir)
    where = f"{extract_dir} (extract {manifest['extract_id']})"
    if manifest["linkage_project_id"] != project_id:
        raise IngestError(
            f"{where}: belongs to linkage project {manifest['linkage_project_id']!r}, "
            f"not this home's {project_id!r}"
        )
    for name in CHECKED_KEY_IDS:
        if manifest["key_ids"].get(name) != key_ids.get(name):
            raise IngestError(
                f"{where}: {name} key id {manifest['key_ids'].get(name)!r} is not this "
                f"project's ({key_ids.get(name)!r}); it was encoded with another key"
            )
    for name in ("linkage.parquet", "content.parquet") if with_content else ("linkage.parquet",):
        expected = manifest["files"].get(name)
        path = extract_dir / name
        if expected is None:
            raise IngestError(f"{where}: manifest lists no hash for {name}")
        if not path.is_file():
            raise IngestError(f"{where}: {name} is missing")
        if sha256_file(path) != expected:
            raise IngestError(f"{where}: {name} does not match its manifest hash (altered?)")
    return manifest


@contextmanager
def _open_store(store_path: Path, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store for one operation, inside its gate (a serving API's processes take turns;
    a write tells them to re-read the active extracts)."""
    with StoreConnection(store_path, duckdb.connect, shared=True).cursor(write) as con:
        con.execute(EXTRACTS_DDL)
        yield con


def ingest_extracts(
    extract_dirs: list[Path],
    extracts_dir: Path,
    store_path: Path,
    project_id: str,
    key_ids: dict[str, str],
    keep_content: bool = True,
) -> list[IngestedExtract]:
    """Verify every extract, then copy and register them all (a newer extract of a source
    replaces the previous one as active). Raises IngestError with nothing registered.

    Needs no key: `key_ids` are the project's public key ids (HOME/keys.json)."""
    manifests = [verify_extract(Path(d), project_id, key_ids, keep_content) for d in extract_dirs]
    ids = [m["extract_id"] for m in manifests]
    if len(set(ids)) != len(ids):
        raise IngestError("the same extract is given twice")
    with _open_store(store_path, write=True) as con:
        for d, m in zip(extract_dirs, manifests, strict=True):
            seen = con.execute(
                "SELECT ingested_at FROM extracts WHERE extract_id = ?", [m["extract_id"]]
            ).fetchall()
            if seen:
                raise IngestError(
                    f"{d}: extract {m['extract_id']} was already ingested at {seen[0][0]}"
                )
        placed: list[Path] = []
        in_transaction = False
        try:
            kept = KEPT_FILES if keep_content else LINKAGE_ONLY_FILES
            out = [_place(Path(d), m, Path(extracts_dir), placed, kept)
                   for d, m in zip(extract_dirs, manifests, strict=True)]
            now = datetime.now(UTC).isoformat(timespec="seconds")
            con.execute("BEGIN TRANSACTION")
            in_transaction = True
            for m in sorted(manifests, key=lambda m: m.get("created_at", "")):
                con.execute(
                    "UPDATE extracts SET active = false WHERE source = ? AND active", [m["source"]]
                )
                con.execute(
                    "INSERT INTO extracts VALUES (?, ?, ?, ?, ?, true)",
                    [m["extract_id"], m["source"], m["kind"], now, json.dumps(m)],
                )
            con.execute("COMMIT")
        except BaseException:
            if in_transaction:
                con.execute("ROLLBACK")
            for p in placed:
                shutil.rmtree(p, ignore_errors=True)
            raise
    return out


def _place(src: Path, manifest: dict[str, Any], extracts_dir: Path, placed: list[Path],
           kept: tuple[str, ...] = KEPT_FILES) -> IngestedExtract:
    """Copy the kept files to HOME/extracts/<source>/<extract_id>/ through a temp dir."""
    dest = extracts_dir / manifest["source"] / manifest["extract_id"]
    if dest.exists():
        raise IngestError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        for name in kept:
            shutil.copyfile(src / name, tmp / name)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    placed.append(dest)
    return IngestedExtract(manifest["extract_id"], manifest["source"], manifest["kind"], dest)


def active_extracts(store_path: Path, extracts_dir: Path) -> list[IngestedExtract]:
    """The active extract of every source, in source order."""
    if not Path(store_path).exists():
        return []
    with _open_store(store_path) as con:
        rows = con.execute(
            "SELECT extract_id, source, kind FROM extracts WHERE active ORDER BY source"
        ).fetchall()
    return [IngestedExtract(e, s, k, Path(extracts_dir) / s / e) for e, s, k in rows]


def extract_from_dir(extract_dir: Path) -> IngestedExtract:
    """An extract directory given directly (`joinedup link --extracts DIR`)."""
    m = read_manifest(Path(extract_dir))
    return IngestedExtract(m["extract_id"], m["source"], m["kind"], Path(extract_dir))


def clk_bits_of(extracts: list[IngestedExtract]) -> int:
    """The CLK size the extracts share (from their manifests); they must agree, since
    Bloom filters of different sizes cannot be compared."""
    sizes = {}
    for e in extracts:
        encoding = read_manifest(e.path).get("encoding") or {}
        sizes[e.source] = int(encoding.get("clk_bits", 1024))
    if len(set(sizes.values())) > 1:
        raise IngestError(f"extracts use different CLK sizes: {sizes}")
    return next(iter(sizes.values()))


def encoding_scheme_of(extracts: list[IngestedExtract]) -> str:
    """The encoding scheme the extracts share ("v2", or "v1" for the previous one). They
    must also share the salt of the names' postcode views: under two salts those filters
    would not compare, and the run would quietly lose every pair that needs them."""
    schemes, salts = {}, {}
    for e in extracts:
        encoding = read_manifest(e.path).get("encoding") or {}
        schemes[e.source] = encoding.get("scheme", "v1")
        salts[e.source] = encoding.get("name_postcode_salt", "postcode")
    if len(set(schemes.values())) > 1:
        raise IngestError(f"extracts use different encodings, which cannot be compared: {schemes}")
    if len(set(salts.values())) > 1:
        raise IngestError("extracts use different [encoding] name_postcode_salt settings, whose postcode views "
                          f"of the names cannot be compared: {salts}; every connector of a project must use one")
    return next(iter(schemes.values()), "v2")


def _columns_of(scheme: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(int64 columns, CLK columns, fingerprint columns) of an encoding scheme."""
    if scheme == "v1":
        return V1_TOKEN_COLUMNS + V1_BLOCKING_COLUMNS, V1_CLK_COLUMNS, V1_FINGERPRINT_COLUMNS
    return TOKEN_COLUMNS, CLK_COLUMNS, FINGERPRINT_COLUMNS


def stack_sql(extracts: list[IngestedExtract], clk_words: int | None = None, ids: bool = True,
              identity_fp: bool = True) -> str:
    """SQL stacking every extract's linkage rows into one table.

    Each record gets an integer unique_id, its source and `identity_fp` (a digest of the
    columns that say "the same identity values", for stable entity ids). With `clk_words`,
    each CLK becomes the words struct the Dice macro reads (`linkage.clk`); without, the
    BLOBs are kept as they are (what records.parquet holds). The columns are the encoding
    scheme's (from the manifests; all extracts must share one). `ids=False` leaves out
    unique_id and identity_fp (for a pass that joins on (source, ref) and needs neither);
    `identity_fp=False` leaves out identity_fp only (records.parquet joins the run's
    tables on unique_id).
    """
    tokens, clk_columns, fingerprint = _columns_of(encoding_scheme_of(extracts))
    plains = []
    for e in extracts:
        have = set(pq.read_schema(e.linkage_path).names)
        missing = [c for c in (*tokens, *clk_columns) if c not in have and c not in OPTIONAL_KEY_COLUMNS]
        if missing:
            raise IngestError(f"{e.linkage_path}: linkage file lacks column(s) {missing}")
        # An optional key the extract lacks is a null: it agrees with nothing.
        plains.append(", ".join(c if c in have else f"NULL::BIGINT AS {c}" for c in tokens))
    if clk_words is None:
        clks = ", ".join(clk_columns)
    else:
        clks = ", ".join(f"{clk_struct_sql(c, clk_words)} AS {c}" for c in clk_columns)
    fp = "md5(concat_ws('|', " + ", ".join(f"coalesce({c}::VARCHAR, '')" for c in fingerprint) + "))"
    if not ids:
        return " UNION ALL ".join(
            f"SELECT '{_sql_str(e.source)}' AS source, ref, {plain}, {clks} "
            f"FROM read_parquet('{_sql_str(str(e.linkage_path))}')"
            for e, plain in zip(extracts, plains, strict=True))
    # unique_id: 1..N in extract order, then file order. Numbered from each file's own row
    # numbers and the row counts before it, so the load needs no window over every record
    # (a window buffers whole rows, CLKs included, in one pass: most of the load's time).
    parts, offset = [], 0
    for e, plain in zip(extracts, plains, strict=True):
        path = _sql_str(str(e.linkage_path))
        parts.append(
            f"SELECT file_row_number + {offset + 1} AS unique_id, '{_sql_str(e.source)}' AS source, ref, "
            f"{plain}, {clks}{f', {fp} AS identity_fp' if identity_fp else ''} "
            f"FROM read_parquet('{path}', file_row_number = true)")
        offset += pq.ParquetFile(e.linkage_path).metadata.num_rows
    return " UNION ALL ".join(parts)


def _sql_str(value: str) -> str:
    return value.replace("'", "''")
