"""Small deterministic CSV sources and helpers for the extract and privacy tests."""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from connectors.keys import KeyRing

GIVEN = ["Bartholomew", "Genevieve", "Maximilian", "Rosalind", "Cornelius", "Philippa",
         "Ann", "Leo", "Zoë", "José", "Siobhan", "Mohammed"]
FAMILY = ["Fitzwilliam", "Abernethy", "Castellano", "Wainwright", "O'Sullivan",
          "Smith-Jones", "Ng", "Okonkwo", "Kowalczyk", "Threlfall"]
STREETS = ["Northdown Road", "Canterbury Crescent", "Ethelbert Terrace", "Dalby Square"]
TOWNS = ["Cliftonville", "Westbrook", "Garlinge", "Birchington"]

MAPPING_TOML = """
[identity]
local_id = "rec_id"
given_name = "first"
middle_names = "middle"
family_name = "surname"
date_of_birth = { column = "dob", format = "%d/%m/%Y" }
nhs_number = "nhs"
nino = "ni"
sex = "gender"
postcode = "pc"
address = ["house", "street"]
locality = "town"
"""
HEADER = ["rec_id", "first", "middle", "surname", "dob", "nhs", "ni", "gender", "pc",
          "house", "street", "town", "notes"]


def nhs_number(rng: random.Random) -> str:
    while True:
        stem = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(stem, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, stem)) + str(check)


def nino(rng: random.Random) -> str:
    return rng.choice("ABCEH") + rng.choice("ABCEH") + f"{rng.randrange(10**6):06d}" + rng.choice("ABCD")


def person_rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    """n people as raw CSV rows (UK formats, distinct identifiers)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        dob = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
        rows.append({
            "rec_id": f"R{i:05d}",
            "first": rng.choice(GIVEN),
            "middle": rng.choice(["", "Evangeline", "Horatio"]),
            "surname": rng.choice(FAMILY),
            "dob": dob.strftime("%d/%m/%Y"),
            "nhs": nhs_number(rng),
            "ni": nino(rng),
            "gender": rng.choice(["M", "F"]),
            "pc": f"CT{rng.randrange(1, 21)} {rng.randrange(10)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTUWXYZ')}",
            "house": str(rng.randrange(1, 200)),
            "street": rng.choice(STREETS),
            "town": rng.choice(TOWNS),
            "notes": "",
        })
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def write_mapping(path: Path, text: str = MAPPING_TOML) -> Path:
    path.write_text(text)
    return path


def keyring(project: str = "proj-test") -> KeyRing:
    return KeyRing(bytes(range(32)), project)


def read_table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def tokens_by_local_id(out: Path) -> dict[str, dict]:
    """Linkage rows of an extract keyed by the source's local id (via the keymap)."""
    refs = {r["ref"]: r["local_id"] for r in read_table(out / "keymap.parquet")}
    return {refs[r["ref"]]: r for r in read_table(out / "linkage.parquet")}
