"""Extracts with their ground truth, the population register and public frequency lists.

The attacker never sees the ground truth: it is here only to score the attacks. What the
attacker is given is explicit in each attack (an extract's files, `Register.frequencies`,
`Register` itself as the public register of names and dates an attacker re-identifies
into, and a known 1% of people from `World.known_people`).
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from connectors.sources import effective_mapping, reader_module
from connectors.standardise import StandardIdentity, standardise_identity

ATTRIBUTES = ("given", "family", "given_canon", "given_phon", "family_phon", "middle", "dob", "year",
              "month", "day", "dm", "sex", "postcode", "sector", "district", "locality", "address",
              "nhs", "nino", "names")
# What the register lists for each person (a public register: names, date of birth, address;
# the address since session 11, as the UK's open electoral register lists it).
REGISTER_ATTRIBUTES = ("given", "family", "given_canon", "given_phon", "family_phon", "dob", "year",
                       "month", "day", "dm", "sex", "postcode", "sector", "district", "locality", "names",
                       "middle", "address")


def attributes_of(ident: StandardIdentity) -> dict[str, str | None]:
    """A record's standardised plaintext, attribute by attribute (strings or None)."""
    d = ident.dob
    phon = sorted(p for p in (ident.given_phon, ident.family_phon) if p)
    return {
        "given": ident.given, "family": ident.family, "given_canon": ident.given_canon,
        "given_phon": ident.given_phon, "family_phon": ident.family_phon, "middle": ident.middle,
        "dob": d.isoformat() if d else None,
        "year": f"{d.year:04d}" if d else None, "month": f"{d.month:02d}" if d else None,
        "day": f"{d.day:02d}" if d else None,
        "dm": "-".join(f"{v:02d}" for v in sorted((d.day, d.month))) if d else None,
        "sex": ident.sex, "postcode": ident.postcode, "sector": ident.pc_sector,
        "district": ident.pc_district, "locality": ident.locality, "address": ident.address,
        "nhs": ident.nhs_number, "nino": ident.nino,
        "names": "|".join(phon) if len(phon) == 2 else None,
    }


@dataclass
class Extract:
    """One split extract as the linkage unit / collation store holds it, plus its truth."""

    name: str
    directory: Path
    manifest: dict[str, Any]
    linkage: Any  # pyarrow Table, rows in file order
    content: Any  # pyarrow Table, rows in file order
    truth: pd.DataFrame  # aligned with the linkage rows: ref, person, local_id, source_row, ATTRIBUTES, codes

    @property
    def scheme(self) -> str:
        return (self.manifest.get("encoding") or {}).get("scheme", "v1")

    def column(self, name: str) -> list:
        return self.linkage.column(name).to_pylist()

    def filters(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(bits as (n, m) uint8 0/1, present) of a CLK column."""
        values = self.linkage.column(name).to_pylist()
        width = next((len(v) for v in values if v is not None), 128)
        present = np.array([v is not None for v in values])
        raw = np.frombuffer(b"".join(v if v is not None else bytes(width) for v in values), dtype=np.uint8)
        return np.unpackbits(raw.reshape(len(values), width), axis=1), present


@dataclass
class Register:
    """The population: each person's attribute values (all values seen in their records)."""

    values: dict[str, dict[str, set[str]]]  # attribute -> value -> persons
    modal: pd.DataFrame  # one row per person: their most common value of each attribute
    _freq_cache: dict[Any, Counter] = field(default_factory=dict)

    def candidates(self, guess: dict[str, str]) -> set[str] | frozenset | None:
        """Persons consistent with every guessed attribute (None when nothing was guessed).
        The result may be the register's own set: do not modify it."""
        out = None
        empty: frozenset = frozenset()
        for attr, value in sorted(guess.items(), key=lambda kv: len(self.values[kv[0]].get(kv[1], ()))):
            persons = self.values[attr].get(value, empty)
            out = persons if out is None else out & persons
            if not out:
                return out
        return out

    def frequencies(self, plaintext: Callable[[pd.Series], Any] | str) -> Counter:
        """The public frequency list of a plaintext (an attribute name or a function of a
        person's modal attributes): how many people have each value."""
        key = plaintext if isinstance(plaintext, str) else id(plaintext)
        got = self._freq_cache.get(key)
        if got is None:
            if isinstance(plaintext, str):
                got = Counter(v for v in self.modal[plaintext] if v is not None)
            else:
                got = Counter(v for v in map(plaintext, self.modal.itertuples(index=False)) if v is not None)
            self._freq_cache[key] = got
        return got


def reidentified(register: Register, guess: dict[str, str], person: str) -> float:
    """Expected credit of a guess: 1/k when the right person is among its k candidates."""
    if not guess:
        return 0.0
    cands = register.candidates(guess)
    return 1.0 / len(cands) if cands and person in cands else 0.0


@dataclass
class World:
    """The attacked extracts, the population register and the people the attacker knows."""

    extracts: list[Extract]
    register: Register
    people: list[str]

    def known_people(self, fraction: float = 0.01, seed: int = 1) -> set[str]:
        rng = np.random.default_rng(seed)
        n = max(1, int(round(fraction * len(self.people))))
        return set(rng.choice(sorted(self.people), size=n, replace=False).tolist())


def _read_truth(source_dir: Path) -> dict[tuple[str, str], str]:
    with (source_dir / "ground_truth.csv").open() as fh:
        return {(r["source"], r["local_id"]): r["person_id"] for r in csv.DictReader(fh)}


def _plaintext(kind: str, input: str) -> dict[str, tuple[int, dict[str, str | None], frozenset[str]]]:
    """local id -> (source row, attributes, indicator codes), read as the connector reads it."""
    mapping = effective_mapping(kind, None)
    out = {}
    # Rows the connector rejects never reach an extract: the attacker can ignore them too.
    for rec in reader_module(kind).read(input, mapping, lambda _reject: None):
        ident, _problems = standardise_identity(rec.identity, mapping)
        if ident.local_id is None:
            continue
        out[ident.local_id] = (rec.row_number, attributes_of(ident), frozenset(i.code for i in rec.indicators))
    return out


def load_extract(directory: Path, kind: str, input: str, truth: dict[tuple[str, str], str],
                 plaintext: dict | None = None) -> Extract:
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    linkage = pq.read_table(directory / "linkage.parquet")
    content = pq.read_table(directory / "content.parquet")
    keymap = dict(zip(*(pq.read_table(directory / "keymap.parquet").column(c).to_pylist()
                        for c in ("ref", "local_id")), strict=True))
    plain = plaintext if plaintext is not None else _plaintext(kind, input)
    rows = []
    for ref in linkage.column("ref").to_pylist():
        local = keymap[ref]
        source_row, attrs, codes = plain[local]
        rows.append({"ref": ref, "person": truth.get((kind, local)), "local_id": local,
                     "source_row": source_row, "codes": codes, **attrs})
    return Extract(manifest["source"], directory, manifest, linkage, content, pd.DataFrame(rows))


def build_register(plaintexts: Iterable[tuple[str, dict]], truth: dict[tuple[str, str], str]) -> Register:
    values: dict[str, dict[str, set[str]]] = {a: defaultdict(set) for a in REGISTER_ATTRIBUTES}
    per_person: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for kind, plain in plaintexts:
        for local, (_row, attrs, _codes) in plain.items():
            person = truth.get((kind, local))
            if person is None:
                continue
            for a in REGISTER_ATTRIBUTES:
                v = attrs[a]
                if v is not None:
                    values[a][v].add(person)
                    per_person[person][a][v] += 1
    modal = pd.DataFrame([
        {"person": p, **{a: (c[a].most_common(1)[0][0] if c[a] else None) for a in REGISTER_ATTRIBUTES}}
        for p, c in per_person.items()])
    return Register({a: dict(v) for a, v in values.items()}, modal)


def load_world(source_dir: Path, extracts: dict[str, Path], inputs: dict[str, str]) -> World:
    """`extracts`: kind -> extract dir; `inputs`: kind -> source file name under source_dir."""
    source_dir = Path(source_dir)
    truth = _read_truth(source_dir)
    plain = {kind: _plaintext(kind, str(source_dir / inputs[kind])) for kind in inputs}
    register = build_register(plain.items(), truth)
    loaded = [load_extract(d, kind, str(source_dir / inputs[kind]), truth, plain[kind])
              for kind, d in extracts.items()]
    return World(loaded, register, sorted(register.modal["person"]))
