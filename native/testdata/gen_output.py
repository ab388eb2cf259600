"""Vectors for native/output: refs, content plaintexts and rejects.csv lines, as the
Python connector makes them (connectors/extract.py, connectors/content.py).

Run from the repository root: .venv/bin/python native/testdata/gen_output.py
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connectors.content import SIZE_CLASSES, encrypt_batch
from connectors.extract import _Refs
from connectors.pseudonymise import EXTENDED_LINKAGE_COLUMNS, LINKAGE_COLUMNS

OUT = Path(__file__).with_name("output_vectors.json")


class _Keys:
    """What _Refs reads of a KeyRing."""

    def __init__(self, ref: bytes):
        self._ref = ref

    def key(self, purpose: str) -> bytes:
        assert purpose == "ref"
        return self._ref


def refs_cases() -> list[dict]:
    ids = ["A1", "A2", "A1", "", "x|y", "ünï", "A1", "A2", "😀", "a" * 200, "A1"]
    cases = []
    for key, source in ((bytes(range(32)), "dwp"), (b"k" * 70, "nhs.trust-1_x"), (b"", "s")):
        refs = _Refs(_Keys(key), source)
        # Two calls: the repeat counter carries over between batches.
        out = refs(ids[:5]) + refs(ids[5:])
        cases.append({"key": key.hex(), "source": source, "local_ids": ids, "split": 5, "refs": out})
    return cases


def content_cases() -> list[dict]:
    key = bytes(range(100, 132))
    extract_id = "0123456789abcdef0123456789abcdef"
    area = ['{"postcode_district":"AB1","postcode_sector":"AB1 2"}', '{"postcode_district":null,"postcode_sector":null}']
    big = "[" + ",".join([f'{{"code":"C{i}","date":"2020-01-01","value":1.5}}' for i in range(40)]) + "]"
    cases = []
    for kind, source, inds, classes in (
        ("dwp", "dwp", None, SIZE_CLASSES),
        ("nhs", "nhs.trust", ['[{"code":"x","date":null,"value":"a\\"b"}]', big], SIZE_CLASSES),
        ('we"ird\\kind\u00e9\U0001F600\x7f\n', "s-1", ["[]", "[]"], SIZE_CLASSES),
        ("council", "c", [big, "[]"], (64, 128)),
        ("council", "c", [big, "[]"], ()),
    ):
        refs = ["00ff" * 6, "abcdef012345678901234567"]
        nonces, cts = encrypt_batch(key, extract_id, source, kind, refs, area, inds, classes)
        aes = AESGCM(key)
        plains = [aes.decrypt(n, c, f"{extract_id}|{r}".encode()) for n, c, r in zip(nonces, cts, refs, strict=False)]
        cases.append({
            "key": key.hex(), "extract_id": extract_id, "kind": kind, "source": source,
            "refs": refs, "area": area, "indicators": inds, "classes": list(classes),
            "plaintexts": [p.decode() for p in plains],
        })
    return cases


def csv_case() -> dict:
    rows = [
        ["row_number", "field", "reason", "action"],
        [1, "local_id", "missing local id", "rejected"],
        [22, "date_of_birth", "bad date '1/2/3', expected one of: a, b", "field_dropped"],
        [3, "x", 'say "hi"', "rejected"],
        [4, " lead", "trail ", "rejected"],
        [5, "nl", "a\nb", "rejected"],
        [6, "cr", "a\rb", "rejected"],
        [7, "", "", "rejected"],
        [8, "tab", "a\tb;c'd", "rejected"],
        [9, "uni", "ünï 😀", "rejected"],
    ]
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return {"rows": [[str(c) for c in r] for r in rows], "text": buf.getvalue()}


def main() -> None:
    data = {
        "refs": refs_cases(),
        "content": content_cases(),
        "csv": csv_case(),
        "linkage_columns": list(LINKAGE_COLUMNS),
        "extended_linkage_columns": list(EXTENDED_LINKAGE_COLUMNS),
    }
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
