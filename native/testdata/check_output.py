"""Checks an extract the native output package wrote, with the Python connector's own code:
schemas (with nullability) against connectors.extract's, ref order, decryption with
connectors.content.decrypt_rows, and that DuckDB reads the files. Prints what it read as
JSON for the Go test to compare.

Usage: .venv/bin/python native/testdata/check_output.py OUT_DIR EXTRACT_ID CONTENT_KEY_HEX COLUMNS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from connectors.content import SIZE_CLASSES, decrypt_rows
from connectors.extract import CONTENT_SCHEMA, KEYMAP_SCHEMA, linkage_schema


def main() -> None:
    out, extract_id, key_hex, columns = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    out = Path(out)
    expected = {
        "linkage.parquet": linkage_schema(tuple(columns)),
        "content.parquet": CONTENT_SCHEMA,
        "keymap.parquet": KEYMAP_SCHEMA,
    }
    tables = {}
    for name, schema in expected.items():
        got = pq.read_schema(out / name)
        if not got.equals(schema):
            raise SystemExit(f"{name}: schema\n{got}\nexpected\n{schema}")
        for g, e in zip(got, schema, strict=True):
            if g.nullable != e.nullable:
                raise SystemExit(f"{name}: {g.name} nullable {g.nullable}, expected {e.nullable}")
        tables[name] = pq.read_table(out / name)
        n = duckdb.sql(f"select count(*) from read_parquet('{out / name}')").fetchall()[0][0]
        if n != tables[name].num_rows:
            raise SystemExit(f"{name}: DuckDB reads {n} rows, pyarrow {tables[name].num_rows}")
    link, content, keymap = (tables[n] for n in expected)
    refs = link.column("ref").to_pylist()
    if refs != sorted(refs):
        raise SystemExit("linkage rows are not in ref order")
    if content.column("ref").to_pylist() != refs or keymap.column("ref").to_pylist() != refs:
        raise SystemExit("content/keymap refs differ from linkage refs")
    docs = decrypt_rows(bytes.fromhex(key_hex), extract_id, content)
    lengths = [len(c) - 16 for c in content.column("ciphertext").to_pylist()]
    bad = [n for n in lengths if n not in SIZE_CLASSES and n % SIZE_CLASSES[-1]]
    if bad:
        raise SystemExit(f"plaintext lengths not padded to a size class: {bad[:5]}")
    rows = [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in r.items()} for r in link.to_pylist()]
    print(json.dumps({
        "linkage": rows,
        "local_ids": keymap.column("local_id").to_pylist(),
        "docs": docs,
        "row_groups": pq.ParquetFile(out / "linkage.parquet").num_row_groups,
    }))


if __name__ == "__main__":
    main()
