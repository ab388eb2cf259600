"""The batch (column-wise, per distinct value) path gives what the per-record path gives."""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pytest

from connectors.columnar import ColumnarEncoder, records_to_columns
from connectors.mapping import mapping_from_dict
from connectors.pseudonymise import EncodingSettings, IdentityEncoder
from connectors.standardise import standardise_identity
from tests.connectors.extract_fixtures import keyring

TODAY = date(2026, 1, 1)

# Messy values per field, including blanks, invalid values and repeats.
CHOICES = {
    "local_id": ["", "  ", None],  # plus unique ids
    "given_name": ["Anne", "anne", "Dr. Anne-Marie", "Bill", "William", "Zoë", "José Luis", "",
                   "  ", None, "!!", "Mr", "Siobhan"],
    "middle_names": ["", None, "Evangeline", "John Paul", "O'Neil", "??"],
    "family_name": ["Jones", "O'Brien", "Smith-Jones", "de la Cruz", "Ng", "", None, "123",
                    "Müller", "Threlfall Jr"],
    "date_of_birth": ["1990-03-15", "15/03/1990", "05/03/1990", "19900315", "31/02/1990",
                      "2090-01-01", "1850-01-01", "15 Mar 1990", "", None, "yesterday", "04/04/1990"],
    "nhs_number": ["9434765919", "943 476 5919", "9434765918", "12345", "", None],
    "nino": ["AB123456C", "ab 12 34 56 c", "AB12345C", "GB123456A", "", None],
    "sex": ["M", "f", "U", "banana", "", None, "other"],
    "postcode": ["CT9 1AB", "ct91ab", "SW1A 1AA", "NOT A POSTCODE", "2615", "", None],
    "address": ["12 High St.", "12 high street", "Flat 3a, Ocean Rd", ", .", "", None,
                "7 Rue Étienne"],
    "locality": ["Margate", "MARGATE", "Westbrook", "", None, "!!"],
}


def messy_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {f: rng.choice(vals) for f, vals in CHOICES.items()}
        if rng.random() < 0.9:
            row["local_id"] = f" L{i} "
        if rng.random() < 0.3:  # some unique NHS numbers / addresses, like real data
            row["address"] = f"{rng.randrange(1, 300)} {rng.choice(['High St', 'Dalby Sq'])}"
        rows.append(row)
    return rows


def per_record(encoder, rows, mapping):
    idents, problems, kept = [], {}, []
    for i, raw in enumerate(rows):
        ident, probs = standardise_identity(raw, mapping, today=TODAY)
        if probs:
            problems[i] = probs
        if not any(p.fatal for p in probs):
            idents.append(ident)
            kept.append(i)
    return idents, problems, kept


@pytest.mark.parametrize("mapping_doc", [
    None,
    {"identity": {"postcode": {"column": "p", "validate": False},
                  "nino": {"column": "n", "validate": False},
                  "date_of_birth": {"column": "d", "format": "%d/%m/%Y"}}},
])
def test_columnar_matches_per_record_path(mapping_doc):
    mapping = mapping_from_dict(mapping_doc) if mapping_doc else None
    rows = messy_rows(3000, seed=11)
    kr = keyring()
    idents, problems, kept = per_record(None, rows, mapping)
    expected = IdentityEncoder(kr).encode_batch(idents)

    batch = ColumnarEncoder(IdentityEncoder(kr), mapping, today=TODAY).encode_columns(records_to_columns(rows))
    assert np.flatnonzero(batch.accepted).tolist() == kept
    assert 0 < len(kept) < len(rows)  # both accepted and rejected rows are exercised
    assert batch.problems == problems
    assert set(batch.columns) == set(expected)
    for name, arr in expected.items():
        assert batch.columns[name].to_pylist() == arr.to_pylist(), name
    assert batch.local_ids == [i.local_id for i in idents]
    areas = [f'{{"postcode_district":{_js(i.pc_district)},"postcode_sector":{_js(i.pc_sector)}}}'
             for i in idents]
    assert batch.area_json == areas


def _js(v):
    return "null" if v is None else f'"{v}"'


def test_columnar_caches_survive_across_batches():
    """A second batch through the same encoder (warm caches) still matches a fresh encoder."""
    kr = keyring()
    col = ColumnarEncoder(IdentityEncoder(kr), today=TODAY)
    col.encode_columns(records_to_columns(messy_rows(500, seed=1)))
    rows = messy_rows(500, seed=2)
    warm = col.encode_columns(records_to_columns(rows))
    cold = ColumnarEncoder(IdentityEncoder(kr), today=TODAY).encode_columns(records_to_columns(rows))
    for name, arr in cold.columns.items():
        assert warm.columns[name].to_pylist() == arr.to_pylist(), name


def test_columnar_blip_changes_filters_not_tokens():
    kr = keyring()
    rows = messy_rows(300, seed=3)
    plain = ColumnarEncoder(IdentityEncoder(kr), today=TODAY).encode_columns(records_to_columns(rows))
    hardened = ColumnarEncoder(
        IdentityEncoder(kr, EncodingSettings(hardening="blip", blip_f=0.05), rng=np.random.default_rng(1)),
        today=TODAY,
    ).encode_columns(records_to_columns(rows))
    assert hardened.columns["mk_name_dob"].to_pylist() == plain.columns["mk_name_dob"].to_pylist()
    assert hardened.columns["clk_family"].to_pylist() != plain.columns["clk_family"].to_pylist()


def test_content_plaintext_fast_path_is_byte_identical():
    """encrypt_batch assembles the JSON from parts: it must equal the documented json.dumps form."""
    import json
    from datetime import date as d

    from connectors.content import (
        content_plaintext,
        decrypt_rows,
        encrypt_batch,
        indicators_json,
    )
    from connectors.records import Indicator

    key = bytes(range(32))
    refs = ["a" * 24, "b" * 24, "c" * 24]
    areas = ['{"postcode_district":"CT9","postcode_sector":"CT9 1"}', _AREA_NONE_JS, _AREA_NONE_JS]
    inds = [[Indicator("dwp.benefit", "UC", d(2025, 1, 2)), Indicator("dwp.lone_parent", True, None)],
            [Indicator("housing.rent_arrears_weeks", 9.5, d(2024, 12, 31))], []]
    nonces, cts = encrypt_batch(key, "x1", "dwp-thanet", "dwp", refs, areas,
                                [indicators_json(i) for i in inds])
    rows = [{"ref": r, "nonce": n, "ciphertext": c} for r, n, c in zip(refs, nonces, cts, strict=True)]
    docs = decrypt_rows(key, "x1", rows)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    for row, doc, area, ind in zip(rows, docs, areas, inds, strict=True):
        expected = content_plaintext(
            doc["ref"], "dwp-thanet", "dwp", json.loads(area),
            [{"code": i.code, "value": i.value, "date": i.date.isoformat() if i.date else None} for i in ind])
        assert doc == expected
        plain = AESGCM(key).decrypt(row["nonce"], row["ciphertext"], f"x1|{row['ref']}".encode())
        document = json.dumps(expected, separators=(",", ":"), sort_keys=True).encode()
        assert plain == document + b" " * (1024 - len(document))  # padded to the first size class
    assert len({bytes(n) for n in nonces}) == 3


_AREA_NONE_JS = '{"postcode_district":null,"postcode_sector":null}'


def test_extract_with_two_workers_matches_one(tmp_path):
    """Worker processes change nothing in the output but the random refs (and nonces)."""
    from connectors.extract import pseudonymise_extract
    from connectors.mapping import load_mapping
    from tests.connectors.extract_fixtures import (
        person_rows,
        tokens_by_local_id,
        write_csv,
        write_mapping,
    )

    rows = person_rows(120)
    rows[4]["dob"] = rows[4]["nhs"] = rows[4]["ni"] = rows[4]["pc"] = rows[4]["street"] = ""
    rows[4]["house"] = ""
    path = write_csv(tmp_path / "p.csv", rows)
    mapping = load_mapping(write_mapping(tmp_path / "m.toml"))
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        manifest = pseudonymise_extract(keyring(), "csv", "src", str(path), mapping, out,
                                        batch_size=25, workers=workers)
        assert manifest["counts"] == {"read": 120, "accepted": 119, "rejected": 1, "fields_dropped": 0}
        outs.append({k: {c: v for c, v in r.items() if c != "ref"} for k, r in tokens_by_local_id(out).items()})
        assert (out / "rejects.csv").read_text().splitlines()[1].startswith("5,date_of_birth,")
    assert outs[0] == outs[1]
