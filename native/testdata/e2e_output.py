"""End-to-end check of the native program against the Python engine on one synthetic
source: same counts, linkage, keymap, rejects, decrypted content; and the native time.

Usage: .venv/bin/python native/testdata/e2e_output.py [KIND] [PEOPLE]  (after scripts/native.sh)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from connectors.content import decrypt_rows
from connectors.extract import pseudonymise_extract
from connectors.keys import KeyRing
from connectors.synth import write_synthetic_sources
from tests.connectors.bad_inputs import CLEAN

KEYRING = KeyRing(bytes(range(32)), "proj-native")


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "dwp"
    people = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_synthetic_sources(root / "synth", people, seed=11)
        src = root / "synth" / CLEAN[kind]
        out = {}
        for engine, workers in (("python", 1), ("native", 2)):
            t = time.perf_counter()
            out[engine] = pseudonymise_extract(KEYRING, kind, f"src-{kind}", str(src), None, root / engine,
                                               engine=engine, workers=workers)
            print(f"{engine}: {time.perf_counter() - t:.2f}s {out[engine]['counts']}")
        a, b = root / "python", root / "native"
        assert out["native"]["counts"] == out["python"]["counts"]
        for name in ("linkage", "keymap"):
            ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
            assert tb.schema == ta.schema, name
            for col in ta.column_names:
                ca, cb = ta.column(col).to_pylist(), tb.column(col).to_pylist()
                bad = [i for i, (x, y) in enumerate(zip(ca, cb, strict=True)) if x != y]
                assert not bad, f"{name}.{col}: {len(bad)} rows differ, first {bad[0]}: {ca[bad[0]]!r} != {cb[bad[0]]!r}"
        ra, rb = (a / "rejects.csv").read_bytes(), (b / "rejects.csv").read_bytes()
        assert ra == rb, "rejects.csv differs"
        ca, cb = pq.read_table(a / "content.parquet"), pq.read_table(b / "content.parquet")
        assert cb.schema == ca.schema
        key = KEYRING.content_key()
        assert decrypt_rows(key, out["native"]["extract_id"], cb) == decrypt_rows(key, out["python"]["extract_id"], ca)
        assert [len(c) for c in cb.column("ciphertext").to_pylist()] == [len(c) for c in ca.column("ciphertext").to_pylist()]
        print(f"{kind}: same extract ({out['python']['counts']['accepted']} rows)")


if __name__ == "__main__":
    main()
