"""Vectors for native/encode: linkage rows as connectors/pseudonymise.py (scheme v2) and
connectors/columnar.py make them, from a fixed key ring.

Run from the repository root: .venv/bin/python native/testdata/gen_encode.py

(a) `identity_sets`: standardised identities (StandardIdentity fields) and the linkage
    columns IdentityEncoder.encode_batch gives them, for the default settings and variants.
(b) `columnar_sets`: raw identity batches (messy values, blanks, repeats) with a mapping,
    and what ColumnarEncoder.encode_columns gives: accepted, problems, columns, local ids,
    area JSON.
Also the SaltedPermutation constants (numpy's PCG64 draws), to pin the port of the RNG.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, fields
from datetime import date
from pathlib import Path

from connectors.columnar import ColumnarEncoder
from connectors.keys import ENCODING_PURPOSES, KeyRing
from connectors.mapping import mapping_from_dict
from connectors.pseudonymise import CLK_COLUMNS, EncodingSettings, IdentityEncoder
from connectors.records import IDENTITY_FIELDS
from connectors.standardise import StandardIdentity, standardise_identity

OUT = Path(__file__).with_name("encode_vectors.json")
TODAY = date(2026, 12, 3)
KEYRING = KeyRing(bytes(range(32)), "vectors")

GIVEN = ["Anne", "anne", "Dr. Anne-Marie", "Bill", "William", "Zoë", "José Luis", "Siobhan", "Mohammed",
         "Olivia", "Jack", "Katherine", "Catherine", "Kathryn", "Liz", "Elizabeth", "Bob", "Robert", "Aoife",
         "Jean-Paul", "Mary Ann", "Peggy", "Tom", "Thomas", "Wei", "Xi", "A", "Ólafur", "Łukasz"]
FAMILY = ["Jones", "O'Brien", "Smith-Jones", "de la Cruz", "Ng", "Müller", "Threlfall Jr", "Smith", "Smyth",
          "MacDonald", "McDonald", "Patel", "Khan", "Williams", "Van der Berg", "O", "Øster", "Nguyen"]
POSTCODES = ["CT9 1AB", "ct91ab", "SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "EC1A 1BB", "W1A 0AX",
             "LS1 4AP", "E14 5HQ", "CT9 2ZZ"]
STREETS = ["High St", "Dalby Sq", "Ocean Rd", "Church Lane", "Station Road", "Northdown Ave", "The Parade",
           "Flat 3a, Ocean Rd", "7 Rue Étienne", "Apt 12 Marine Tce", "No. 5 Victoria Gdns"]
LOCALITIES = ["Margate", "MARGATE", "Westbrook", "Cliftonville", "St. Peter's", "Broadstairs"]


def good_nhs(rng: random.Random) -> str:
    while True:
        d = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(x * w for x, w in zip(d, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, d)) + str(check)


def good_nino(rng: random.Random) -> str:
    return rng.choice(["AB", "CE", "JH", "PR", "WZ"]) + f"{rng.randrange(10**6):06d}" + rng.choice(["A", "B", "C", "D", ""])


def a_date(rng: random.Random) -> date:
    return date(rng.randrange(1920, 2020), rng.randrange(1, 13), rng.randrange(1, 29))


# ------------------------------------------------------------------ (a) identities


def raw_people(n: int, seed: int) -> list[dict]:
    """Plausible raw identities (mostly clean, some partial), standardised below."""
    rng = random.Random(seed)
    dates = [a_date(rng) for _ in range(n // 4)]
    rows = []
    for i in range(n):
        d = rng.choice(dates)
        row = {
            "local_id": f"P{i}",
            "given_name": rng.choice(GIVEN),
            "middle_names": rng.choice([None, "Evangeline", "John Paul", None]),
            "family_name": rng.choice(FAMILY),
            "date_of_birth": d.isoformat(),
            "postcode": rng.choice(POSTCODES),
            "address": f"{rng.randrange(1, 300)} {rng.choice(STREETS)}",
            "locality": rng.choice(LOCALITIES),
            "sex": rng.choice(["M", "F", None]),
            "nhs_number": good_nhs(rng) if rng.random() < 0.6 else None,
            "nino": good_nino(rng) if rng.random() < 0.5 else None,
        }
        for f in ("given_name", "family_name", "date_of_birth", "postcode", "address", "locality"):
            if rng.random() < 0.08:
                row[f] = None
        rows.append(row)
    return rows


def hand_made() -> list[StandardIdentity]:
    """Edge cases a standardiser would not make but the encoder must treat the same."""
    return [
        StandardIdentity(),  # everything absent
        StandardIdentity(local_id="E1", given="", given_canon="", given_phon="", family="", family_phon=""),
        StandardIdentity(local_id="E2", given="zoë", given_canon="zoë", given_phon="S", family="øster",
                         family_phon="STR", dob=date(1999, 12, 31), postcode="CT91AB", address="1 ünïcödé straße"),
        StandardIdentity(local_id="E3", given="smith", given_canon="smith", given_phon="SM0",
                         family="anne", family_phon="AN", dob=date(1980, 5, 6), postcode="AB1 2CD",
                         pc_sector="AB1 2", pc_district="AB1", locality="x"),
        # The names swapped: the `names` part is order-free.
        StandardIdentity(local_id="E4", given="anne", given_canon="anne", given_phon="AN",
                         family="smith", family_phon="SM0", dob=date(1980, 6, 5), postcode="AB1 2CD",
                         pc_sector="AB1 2", pc_district="AB1", locality="x"),
        StandardIdentity(local_id="E5", nhs_number="9434765919", nino="AB123456", address="a"),
        StandardIdentity(local_id="E6", given="a", given_canon="a", given_phon="A", dob=date(1900, 1, 1),
                         address="x  y\tz x"),
        StandardIdentity(local_id="E7", family="a very long family name indeed with many many words in it",
                         family_phon="AFRLNKFMLNMNTTWTMNMNWRTSNT", postcode="ZZ99 9ZZ", pc_sector="ZZ99 9",
                         pc_district="ZZ99", address=" ".join(["word"] * 40) + " " + "abcdefghijklmnopqrstuvwxyz" * 3),
        StandardIdentity(local_id="E8", given="mary", given_canon="mary", given_phon="MR", family="smith",
                         family_phon="SM0", dob=date(2001, 2, 3), postcode="CT9 1AB", pc_sector="CT9 1",
                         pc_district="CT9", address="", locality=""),
        # Whitespace only: present, an all-zero filter. Python's whitespace includes U+001C.
        StandardIdentity(local_id="E10", given="al", given_canon="al", given_phon="AL", dob=date(1970, 1, 1),
                         postcode="CT9 1AB", address="   "),
        StandardIdentity(local_id="E11", family="al", family_phon="AL", dob=date(1970, 1, 1),
                         postcode="CT9 1AB", address="\x1c x\u00a0y\u2003z\x1fx"),
        StandardIdentity(local_id="E9", given="😀x", given_canon="😀x", given_phon="KS", family="𝔘𝔫",
                         family_phon="", middle="q", sex="X", dob=date(2020, 11, 12)),
    ]


def identities() -> list[StandardIdentity]:
    out = []
    for raw in raw_people(260, seed=5):
        ident, _problems = standardise_identity(raw, None, today=TODAY)
        out.append(ident)
    # Unvalidated postcodes (no sector / district).
    mapping = mapping_from_dict({"identity": {"postcode": {"column": "p", "validate": False}}})
    for raw in raw_people(20, seed=6):
        raw["postcode"] = random.Random(raw["local_id"]).choice(["XYZ123", "12345", "CT91AB", None])
        ident, _problems = standardise_identity(raw, mapping, today=TODAY)
        out.append(ident)
    return out + hand_made()


def ident_json(i: StandardIdentity) -> dict:
    doc = asdict(i)
    doc["dob"] = i.dob.isoformat() if i.dob else None
    return doc


def column_json(arr) -> list:
    out = []
    for v in arr.to_pylist():
        out.append(v.hex() if isinstance(v, bytes) else v)
    return out


def settings_json(s: EncodingSettings) -> dict:
    return {"clk_bits": s.clk_bits, "clk_k": s.clk_k, "clk_k_fields": dict(s.clk_k_fields),
            "hardening": s.hardening, "blip_f": s.blip_f, "extra_match_keys": s.extra_match_keys,
            "filters": list(s.filters), "name_postcode_salt": s.name_postcode_salt}


VARIANTS = {
    "default": EncodingSettings(),
    "postcode+other-name": EncodingSettings(name_postcode_salt="postcode+other-name"),
    "extra_match_keys": EncodingSettings(extra_match_keys=True),
    "filters": EncodingSettings(filters=("clk_family", "clk_address", "clk_given_pc")),
    # The postcode salt group's salt number is its first column's (clk_address, 1), even
    # when only clk_given_pc (2) is published.
    "filters_given_pc": EncodingSettings(filters=("clk_given_pc",)),
    "no_filters": EncodingSettings(filters=()),
    "clk_bits_512": EncodingSettings(clk_bits=512, clk_k=15, clk_k_fields={"address": 8, "given": 30}),
    "all_variants": EncodingSettings(clk_bits=2048, extra_match_keys=True, name_postcode_salt="postcode+other-name",
                                     filters=("clk_given_pc", "clk_family_pc", "clk_address_dob")),
}


def identity_sets() -> list[dict]:
    idents = identities()
    sets = []
    for name, settings in VARIANTS.items():
        chosen = idents if name == "default" else idents[::4] + idents[-10:]
        enc = IdentityEncoder(KEYRING, settings)
        cols = enc.encode_batch(chosen)
        sets.append({"name": name, "settings": settings_json(settings),
                     "identities": [ident_json(i) for i in chosen],
                     "columns": {c: column_json(a) for c, a in cols.items()}})
    return sets


# ------------------------------------------------------------------ (b) raw batches

CHOICES = {
    "local_id": ["", "  ", None, "\t"],
    "given_name": ["Anne", "anne", "Dr. Anne-Marie", "Bill", "William", "Zoë", "José Luis", "", "  ", None, "!!",
                   "Mr", "Siobhan", "  Kathryn ", "MARY ANN", "jean-paul", "Ólafur", "Mrs. O'Hara", "Łukasz",
                   "\u00a0Tom\u00a0", "Dr", "ｆｕｌｌ"],
    "middle_names": ["", None, "Evangeline", "John Paul", "O'Neil", "??", "  "],
    "family_name": ["Jones", "O'Brien", "Smith-Jones", "de la Cruz", "Ng", "", None, "123", "Müller",
                    "Threlfall Jr", "SMYTH", "  Smith  ", "Van der Berg", "Jr", "Øster", "Nguyen-Van"],
    "date_of_birth": ["1990-03-15", "15/03/1990", "05/03/1990", "19900315", "31/02/1990", "2090-01-01",
                      "1850-01-01", "15 Mar 1990", "", None, "yesterday", "04/04/1990", " 1990-03-15 ",
                      "1990-3-5", "15-03-1990", "15.03.1990", "1990-03-15T10:00", "29/02/2000", "29/02/1900",
                      "2026-12-03", "2026-12-04", "1900-01-01", "1899-12-31", "15 March 1990", "1990/03/15",
                      "15/03/90", "00/00/0000", "１９９０-03-15"],
    "nhs_number": ["9434765919", "943 476 5919", "943-476-5919", "9434765918", "12345", "", None, " 9434765919 ",
                   "4010232137", "401 023 2137", "abcdefghij", "94347659190", "٩٤٣٤٧٦٥٩١٩"],
    "nino": ["AB123456C", "ab 12 34 56 c", "AB12345C", "GB123456A", "", None, "JH123456", "QQ123456C",
             "AB 123456 D", "ab123456e", "ZZ123456A", "AO123456A", "ＡＢ123456C", "AB\t123456"],
    "sex": ["M", "f", "U", "banana", "", None, "other", " male ", "9", "X", "Not Known"],
    "postcode": ["CT9 1AB", "ct91ab", "SW1A 1AA", "NOT A POSTCODE", "2615", "", None, " ec1a1bb ", "M1 1AE",
                 "CT9-1AB", "B338TH", "W1A0AX", "ZZ99 9ZZ"],
    "address": ["12 High St.", "12 high street", "Flat 3a, Ocean Rd", ", .", "", None, "7 Rue Étienne",
                "Apt 12, Marine Tce", "No. 5 Victoria Gdns", "  ", "12 HIGH STREET"],
    "locality": ["Margate", "MARGATE", "Westbrook", "", None, "!!", "St. Peter's", "  "],
}


def messy_columns(n: int, seed: int, unique_from: int = 0) -> dict[str, list]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {f: rng.choice(vals) for f, vals in CHOICES.items()}
        if rng.random() < 0.9:
            row["local_id"] = f" L{unique_from + i} "
        if rng.random() < 0.3:  # unique-ish values, like real data
            row["address"] = f"{rng.randrange(1, 300)} {rng.choice(STREETS)}"
        if rng.random() < 0.3:
            row["nhs_number"] = good_nhs(rng)
        if rng.random() < 0.3:
            row["nino"] = good_nino(rng)
        if rng.random() < 0.3:
            row["date_of_birth"] = rng.choice([a_date(rng).isoformat(), a_date(rng).strftime("%d/%m/%Y")])
        rows.append(row)
    return {f: [r[f] for r in rows] for f in IDENTITY_FIELDS}


MAPPINGS = {
    "default": None,
    "unvalidated": {"identity": {"local_id": "id", "postcode": {"column": "p", "validate": False},
                                 "nino": {"column": "n", "validate": False},
                                 "nhs_number": {"column": "h", "validate": False},
                                 "date_of_birth": {"column": "d", "format": "%d/%m/%Y"}}},
    "iso_format": {"identity": {"date_of_birth": {"column": "d", "format": "%Y-%m-%d"}}},
    "compact_format": {"identity": {"date_of_birth": {"column": "d", "format": "%Y%m%d"}}},
}


def mapping_json(doc: dict | None) -> dict:
    if doc is None:
        return {}
    m = mapping_from_dict(doc)
    return {name: {"columns": list(s.columns), "format": s.format, "validate": s.validate}
            for name, s in m.identity.items()}


def problems_json(problems: dict) -> dict:
    return {str(i): [[p.field, p.reason, p.fatal] for p in ps] for i, ps in problems.items()}


def columnar_sets() -> list[dict]:
    sets = []
    plan = [("default", "default", [(160, 21), (120, 22)]),
            ("unvalidated", "default", [(140, 23)]),
            ("iso_format", "postcode+other-name", [(80, 24)]),
            ("compact_format", "extra_match_keys", [(60, 25)]),
            ("default", "filters", [(60, 26)])]
    for mapping_name, settings_name, batches in plan:
        settings = VARIANTS[settings_name]
        mapping = mapping_from_dict(MAPPINGS[mapping_name]) if MAPPINGS[mapping_name] else None
        enc = ColumnarEncoder(IdentityEncoder(KEYRING, settings), mapping, today=TODAY)
        out = []
        start = 0
        for n, seed in batches:
            cols = messy_columns(n, seed, start)
            start += n
            if mapping_name == "compact_format":
                cols["date_of_birth"] = [v.replace("-", "") if v else v for v in cols["date_of_birth"]]
                del cols["address"]  # an unmapped field: every row None
            res = enc.encode_columns(cols)
            out.append({"columns": cols, "accepted": res.accepted.tolist(), "problems": problems_json(res.problems),
                        "encoded": {c: column_json(a) for c, a in res.columns.items()},
                        "local_ids": res.local_ids, "area_json": res.area_json})
        sets.append({"name": f"{mapping_name}/{settings_name}", "mapping": mapping_json(MAPPINGS[mapping_name]),
                     "settings": settings_json(settings), "today": TODAY.isoformat(), "batches": out})
    return sets


def permutation_constants() -> dict:
    """The SaltedPermutation RNG draws (LUTs and constants) for 1024-bit filters."""
    enc = IdentityEncoder(KEYRING)
    s = enc.salting
    return {"width": s.width, "luts": s.luts.tobytes().hex(),
            "consts": [[[int(v) for v in c] for c in stage] for stage in s._consts]}


def main() -> None:
    purposes = list(ENCODING_PURPOSES)
    doc = {
        "master": bytes(range(32)).hex(),
        "project": "vectors",
        "keys": {p: KEYRING.key(p).hex() for p in purposes},
        "permutation": permutation_constants(),
        "identity_sets": identity_sets(),
        "columnar_sets": columnar_sets(),
    }
    assert {f.name for f in fields(StandardIdentity)} == set(ident_json(StandardIdentity()))
    assert set(CLK_COLUMNS) <= set(doc["identity_sets"][0]["columns"])
    OUT.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
