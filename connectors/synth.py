"""Synthetic population and the source systems of four agencies (demo, tests, benchmarks).

`write_synthetic_sources(out, people, seed)` writes, deterministically for a seed:

- `dwp_claimants.csv`        DWP claimant extract
- `council.sqlite`           council database (or tables in PostgreSQL via `council_dsn`)
- `nhs/bundle-NNNNN.json`    FHIR R4 collection Bundles (UK Core Patient, EpisodeOfCare, Condition)
- `housing_tenancies.csv`    housing management system export
- `ground_truth.csv`         source, local_id, person_id, errors  (tests and benchmarks only)
- `people_truth.csv`         person_id, planted barrier severities 0-3, membership (tests only)

People are generated in chunks, each from its own seeded random stream, so memory stays
bounded and the output does not depend on the machine.

Planting rules (what a collation rule set should recover; severity 0 = not planted).
Every planted barrier is evidenced in its *primary* source (membership is forced):
  MH  nhs: talking_therapies completed (1) / active (2); secondary_mental_health active (3);
      dwp (if a claimant): wca_condition mental with LCW (2) / LCWRA (3)
  PH  nhs: long_term_condition; dwp (if a claimant): wca_condition physical, LCW (2) / LCWRA (3)
  DIS dwp: benefit PIP; council (if a resident): care_act_need assessed (2) / eligible (3)
  SUB nhs: drug_alcohol completed (1) / active (2, 3)
  HOU housing: homelessness_application prevention (1); relief + eviction_notice s21 (2);
      main_duty + temporary_accommodation + s8/possession_order (3)
  FIN council: ctax_arrears_gbp 100-399 (1) / 400-1199 (2) / 1200-3000 (3, and sometimes an
      hb_overpayment); housing (if a tenant): rent_arrears_weeks 2-3.9 / 4-7.9 / 8-20;
      dwp (if a claimant): sanctions_12m 1 (2) / 2-3 (3). Without FIN: arrears 0,
      rent arrears under 1.5 weeks, no sanctions.
  SKL dwp: skills_need digital (1) / numeracy or literacy (2) / no_quals (3)
  CAR dwp: benefit CA (1), lone_parent (2), both (3); council: carer's assessment
  CLV council: care_leaver (always severity 2; only people aged 16-25)
  FAM council: open supporting_families case (always severity 2)
  WRK dwp: months_unemployed 6-11 (1) / 12-23 (2) / 24-72 (3); without WRK under 6
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from connectors import synth_errors as err
from connectors import synth_names as names
from connectors.sources import council as council_schema
from connectors.sources.nhs import NHS_NUMBER_SYSTEM, SERVICE_TYPE_SYSTEM

BARRIERS = ("MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "WRK")
_B = {code: i for i, code in enumerate(BARRIERS)}
# Relative prevalence of each barrier area (multiplies the latent class's rate).
_BARRIER_WEIGHT = np.array([1.6, 1.3, 1.0, 0.6, 0.9, 1.6, 1.3, 1.0, 0.8, 0.6, 1.3])
# Latent disadvantage classes: share of adults and per-barrier base rate.
_CLASS_SHARE = (0.63, 0.30, 0.07)
_CLASS_RATE = np.array([0.025, 0.10, 0.45])

REF_DATE = np.datetime64("2025-11-01")  # the "as at" date of every extract (fixed: determinism)
CHUNK = 100_000
BUNDLE_SIZE = 2000
DUPLICATE_RATE = 0.03
SOURCES = ("dwp", "council", "nhs", "housing")

SNOMED = "http://snomed.info/sct"
# SNOMED CT concepts used for long-term conditions, and the group the reader reports.
LTC_CONCEPTS = (
    ("44054006", "Type 2 diabetes mellitus", "diabetes"),
    ("13645005", "Chronic obstructive lung disease", "copd"),
    ("195967001", "Asthma", "asthma"),
    ("279039007", "Low back pain", "msk"),
    ("53741008", "Coronary arteriosclerosis", "heart"),
    ("84757009", "Epilepsy", "epilepsy"),
)


# --------------------------------------------------------------------------- geography


@dataclass(frozen=True)
class Geography:
    postcode: np.ndarray  # one entry per postcode unit
    sector: np.ndarray
    street: np.ndarray
    town: np.ndarray
    ward: np.ndarray


def build_geography(seed: int, people: int) -> Geography:
    """Postcode units in Thanet-like sectors, enough for about 25-40 people per unit."""
    rng = np.random.default_rng([seed, 0xC79])
    n_sectors = min(60, max(8, math.ceil(people / 8000)))
    per_sector = min(400, max(3, math.ceil(people / (n_sectors * 25))))
    letters = names.UNIT_LETTERS
    pc, sec, street, town, ward = [], [], [], [], []
    for k in range(n_sectors):
        town_name, district, wards = names.LOCALITIES[k % len(names.LOCALITIES)]
        digit = (k // len(names.LOCALITIES) + 1) % 10
        sector = f"{district} {digit}"
        ward_name = wards[(k // len(names.LOCALITIES)) % len(wards)]
        for u in rng.permutation(400)[:per_sector]:
            pc.append(f"{sector}{letters[u // 20]}{letters[u % 20]}")
            sec.append(sector)
            stem = names.STREET_STEMS[int(rng.integers(len(names.STREET_STEMS)))]
            kind = names.STREET_TYPES[int(rng.integers(len(names.STREET_TYPES)))]
            street.append(f"{stem} {kind}")
            town.append(town_name)
            ward.append(ward_name)
    arr = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    return Geography(arr(pc), arr(sec), arr(street), arr(town), arr(ward))


# --------------------------------------------------------------------------- identifiers


def _coprime_multiplier(modulus: int, start: int) -> int:
    a = start
    while math.gcd(a, modulus) != 1:
        a += 1
    return a


def nhs_numbers(rng: np.random.Generator, idx: np.ndarray, seed: int) -> np.ndarray:
    """Unique, valid NHS numbers: the first 8 digits are a permutation of the person index."""
    modulus = 30_000_000
    a = _coprime_multiplier(modulus, 7_777_777)
    first8 = 40_000_000 + (a * idx + (seed * 104_729) % modulus) % modulus
    ninth = rng.integers(0, 10, size=idx.shape)
    body = first8 * 10 + ninth
    check = err.nhs_check_digit(body)
    # At most one ninth digit gives the impossible check 10; step past it.
    body = np.where(check == 10, first8 * 10 + (ninth + 1) % 10, body)
    check = err.nhs_check_digit(body)
    return np.array([f"{b * 10 + c:010d}" for b, c in zip(body.tolist(), check.tolist(), strict=True)], dtype=object)


_NINO_PREFIXES = [
    a + b
    for a in "ABCEGHJKLMNOPRSTWXYZ"
    for b in "ABCEGHJKLMNPRSTWXYZ"
    if a + b not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
]


def ninos(rng: np.random.Generator, idx: np.ndarray, seed: int) -> np.ndarray:
    modulus = len(_NINO_PREFIXES) * 1_000_000
    a = _coprime_multiplier(modulus, 1_000_003)
    v = (a * idx + (seed * 7_919) % modulus) % modulus
    suffix = rng.integers(0, 4, size=idx.shape)
    return np.array(
        [f"{_NINO_PREFIXES[x // 1_000_000]}{x % 1_000_000:06d}{'ABCD'[s]}" for x, s in zip(v.tolist(), suffix.tolist(), strict=True)],
        dtype=object,
    )


def _zipf_choice(rng: np.random.Generator, values: list[str], n: int, shift: float, power: float) -> np.ndarray:
    weights = 1.0 / (np.arange(len(values)) + shift) ** power
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=weights / weights.sum())]


# --------------------------------------------------------------------------- people


@dataclass
class People:
    """One chunk of the population, column-wise."""

    person_id: np.ndarray
    sex: np.ndarray  # "M" / "F"
    given: np.ndarray
    middle: np.ndarray  # "" when none
    family: np.ndarray
    other_family: np.ndarray  # a previous/other surname ("" when none)
    dob: np.ndarray  # datetime64[D]
    nhs: np.ndarray
    nino: np.ndarray
    unit: np.ndarray  # index into Geography
    house: np.ndarray
    prev_unit: np.ndarray
    prev_house: np.ndarray
    severity: np.ndarray  # (n, len(BARRIERS)) int8, 0-3
    member: dict[str, np.ndarray]  # source -> bool

    def __len__(self) -> int:
        return len(self.person_id)

    def age(self) -> np.ndarray:
        return (REF_DATE - self.dob).astype(int) // 365


def make_people(rng: np.random.Generator, start: int, n: int, seed: int, geo: Geography) -> People:
    idx = np.arange(start, start + n, dtype=np.int64)
    sex = np.where(rng.random(n) < 0.5, "F", "M").astype(object)
    female = sex == "F"
    given = np.where(
        female,
        _zipf_choice(rng, names.FEMALE_GIVEN, n, 8, 0.7),
        _zipf_choice(rng, names.MALE_GIVEN, n, 8, 0.7),
    )
    middle = np.where(rng.random(n) < 0.4, _zipf_choice(rng, names.MIDDLE, n, 3, 0.5), "")
    family = _zipf_choice(rng, names.FAMILY, n, 4, 0.75)
    other = _zipf_choice(rng, names.FAMILY, n, 4, 0.75)
    other = np.where(female & (rng.random(n) < 0.35) & (other != family), other, "")
    age_days = rng.integers(16 * 365 + 5, 70 * 365, size=n)
    dob = REF_DATE - age_days.astype("timedelta64[D]")
    n_units = len(geo.postcode)
    unit = rng.integers(0, n_units, size=n)
    prev_unit = rng.integers(0, n_units, size=n)
    house = rng.integers(1, 121, size=n)
    prev_house = rng.integers(1, 121, size=n)

    people = People(
        person_id=np.array([f"P{i:08d}" for i in idx.tolist()], dtype=object),
        sex=sex,
        given=given,
        middle=middle,
        family=family,
        other_family=other,
        dob=dob,
        nhs=nhs_numbers(rng, idx, seed),
        nino=ninos(rng, idx, seed),
        unit=unit,
        house=house,
        prev_unit=prev_unit,
        prev_house=prev_house,
        severity=np.zeros((n, len(BARRIERS)), dtype=np.int8),
        member={},
    )
    people.severity = _plant_barriers(rng, people)
    people.member = _memberships(rng, people.severity)
    return people


def _plant_barriers(rng: np.random.Generator, p: People) -> np.ndarray:
    n = len(p)
    cls = rng.choice(3, size=n, p=_CLASS_SHARE)
    prob = np.minimum(0.95, _CLASS_RATE[cls][:, None] * _BARRIER_WEIGHT[None, :])
    has = rng.random((n, len(BARRIERS))) < prob
    has[:, _B["CLV"]] &= p.age() <= 25
    heavy = rng.choice(3, size=(n, len(BARRIERS)), p=(0.25, 0.40, 0.35)) + 1
    light = rng.choice(3, size=(n, len(BARRIERS)), p=(0.50, 0.35, 0.15)) + 1
    sev = np.where((cls == 2)[:, None], heavy, light)
    sev[:, _B["CLV"]] = 2  # binary facts carry a fixed severity
    sev[:, _B["FAM"]] = 2
    return np.where(has, sev, 0).astype(np.int8)


_PRIMARY_SOURCE = {
    "MH": "nhs", "PH": "nhs", "DIS": "dwp", "SUB": "nhs", "HOU": "housing", "FIN": "council",
    "SKL": "dwp", "CAR": "dwp", "CLV": "council", "FAM": "council", "WRK": "dwp",
}


def _memberships(rng: np.random.Generator, sev: np.ndarray) -> dict[str, np.ndarray]:
    n = len(sev)
    any_barrier = (sev > 0).any(axis=1)
    base = {
        "dwp": 0.22 + 0.35 * any_barrier,
        "council": np.full(n, 0.30),
        "nhs": np.full(n, 0.55),
        "housing": 0.15 + 0.20 * any_barrier,
    }
    member = {s: rng.random(n) < base[s] for s in SOURCES}
    for code, source in _PRIMARY_SOURCE.items():
        member[source] |= sev[:, _B[code]] > 0
    return member


# --------------------------------------------------------------------------- source copies


@dataclass
class Copies:
    """Identity fields of the records one source holds (one per copy of a person)."""

    pidx: np.ndarray  # person index within the chunk
    original: np.ndarray  # bool: first copy (service records attach to it)
    given: list[str]
    middle: list[str]
    family: list[str]
    y: np.ndarray
    m: np.ndarray
    d: np.ndarray
    postcode: list[str | None]
    address: list[str]
    town: list[str]
    errors: list[list[str]]
    bad_dob: np.ndarray


def make_copies(rng: np.random.Generator, p: People, geo: Geography, source: str) -> Copies:
    members = np.flatnonzero(p.member[source])
    dups = members[rng.random(len(members)) < DUPLICATE_RATE]
    pidx = np.concatenate([members, dups])
    original = np.concatenate([np.ones(len(members), bool), np.zeros(len(dups), bool)])
    order = rng.permutation(len(pidx))
    pidx, original = pidx[order], original[order]
    n = len(pidx)

    given = p.given[pidx].tolist()
    middle = p.middle[pidx].tolist()
    family = p.family[pidx].tolist()
    ymd = p.dob[pidx].astype(object)
    y = np.array([v.year for v in ymd], dtype=np.int64)
    m = np.array([v.month for v in ymd], dtype=np.int64)
    d = np.array([v.day for v in ymd], dtype=np.int64)
    unit = p.unit[pidx].copy()
    house = p.house[pidx].copy()
    postcode: list[str | None] = list(geo.postcode[unit])
    errors: list[list[str]] = [[] for _ in range(n)]

    primary = err.draw_kinds(rng, n, err.PRIMARY_RATES)
    light = err.draw_kinds(rng, n, err.LIGHT_RATES)
    heavy = np.isin(primary, ["surname_change", "dob_swap", "dob_typo", "moved", "missing_postcode"])
    light = np.where(heavy | (light == primary), "", light)
    for i in np.flatnonzero((primary != "") | (light != "")):
        j = pidx[i]
        for kind in (primary[i], light[i]):
            applied = True
            if kind == "nickname":
                forms = names.NICKNAMES.get(given[i])
                applied = bool(forms)
                if forms:
                    given[i] = forms[int(rng.integers(len(forms)))]
            elif kind == "given_typo":
                given[i] = err.typo(rng, given[i])
            elif kind == "family_typo":
                family[i] = err.typo(rng, family[i])
            elif kind == "surname_change":
                applied = bool(p.other_family[j])
                if applied:
                    family[i] = p.other_family[j]
            elif kind == "dob_swap":
                applied = d[i] <= 12 and d[i] != m[i]
                if applied:
                    d[i], m[i] = m[i], d[i]
            elif kind == "dob_typo":
                if rng.random() < 0.5:
                    d[i] = d[i] - 1 if d[i] > 27 else d[i] + 1
                else:
                    y[i] += 1 if rng.random() < 0.5 else -1
                    if m[i] == 2 and d[i] == 29:
                        d[i] = 28
            elif kind == "moved":
                unit[i], house[i] = p.prev_unit[j], p.prev_house[j]
                postcode[i] = geo.postcode[unit[i]]
            elif kind == "missing_postcode":
                postcode[i] = None
            elif kind == "drop_middle":
                applied = bool(middle[i])
                middle[i] = ""
            else:
                applied = False
            if applied:
                errors[i].append(kind)

    bad_dob = rng.random(n) < err.MALFORMED_RATE
    for i in np.flatnonzero(bad_dob):
        errors[i].append("bad_dob")
    address = [f"{h} {s}" for h, s in zip(house.tolist(), geo.street[unit].tolist(), strict=True)]
    return Copies(
        pidx, original, given, middle, family, y, m, d, postcode, address,
        geo.town[unit].tolist(), errors, bad_dob,
    )


def _dates(c: Copies, fmt: str) -> list[str]:
    """Dates of birth as text; malformed rows get an impossible date (30 Feb or month 13)."""
    y, m, d = c.y.copy(), c.m.copy(), c.d.copy()
    bad = np.flatnonzero(c.bad_dob)
    m[bad] = np.where(bad % 2 == 0, 2, 13)
    d[bad] = np.where(bad % 2 == 0, 30, d[bad])
    if fmt == "iso":
        return [f"{a:04d}-{b:02d}-{e:02d}" for a, b, e in zip(y.tolist(), m.tolist(), d.tolist(), strict=True)]
    return [f"{e:02d}/{b:02d}/{a:04d}" for a, b, e in zip(y.tolist(), m.tolist(), d.tolist(), strict=True)]


def _iso(days: np.ndarray) -> list[str]:
    return np.datetime_as_string(days.astype("datetime64[D]")).tolist()


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + np.floor(rng.random(len(lo)) * (hi - lo)).astype(np.int64)


def _bad_nhs(nhs: str) -> str:
    """The same number with a wrong check digit (mod 11 admits exactly one right digit)."""
    return nhs[:9] + str((int(nhs[9]) + 1 + int(nhs[3]) % 8) % 10)


def _spaced_nhs(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


# --------------------------------------------------------------------------- DWP


def dwp_frame(rng: np.random.Generator, p: People, geo: Geography) -> tuple[pd.DataFrame, Copies]:
    sev = p.severity
    n = len(p)
    wrk = sev[:, _B["WRK"]]
    months = _between(rng, np.array([0, 6, 12, 24])[wrk], np.array([6, 12, 24, 73])[wrk])
    spells = _between(rng, np.array([0, 1, 1, 3])[wrk], np.array([2, 3, 4, 7])[wrk])
    base = np.array(["UC", "JSA", "ESA"], dtype=object)[rng.choice(3, size=n, p=(0.8, 0.1, 0.1))]
    mh, ph = sev[:, _B["MH"]], sev[:, _B["PH"]]
    health = np.maximum(mh, ph)
    base = np.where((health >= 2) & (base == "JSA"), "UC", base)
    car = sev[:, _B["CAR"]]
    pip = sev[:, _B["DIS"]] > 0
    ca = (car == 1) | (car == 3)
    benefits = [
        ";".join([b] + (["PIP"] if q else []) + (["CA"] if c else []))
        for b, q, c in zip(base.tolist(), pip.tolist(), ca.tolist(), strict=True)
    ]
    ffw = (health < 2) & (rng.random(n) < 0.03)
    outcome = np.select([health == 3, health == 2, ffw], ["LCWRA", "LCW", "FFW"], "")
    condition = np.where(health >= 2, np.where(mh >= ph, "mental", "physical"), "")
    wca_date = REF_DATE - rng.integers(30, 700, size=n).astype("timedelta64[D]")
    fin = sev[:, _B["FIN"]]
    sanctions = _between(rng, np.array([0, 0, 1, 2])[fin], np.array([1, 1, 2, 4])[fin])
    skl = sev[:, _B["SKL"]]
    skills = np.array(["", "digital", "numeracy", "no_quals"], dtype=object)[skl]
    skills = np.where((skl == 2) & (rng.random(n) < 0.5), "literacy", skills)
    claim_start = REF_DATE - (months * 30.4 + rng.integers(0, 30, size=n)).astype("timedelta64[D]")

    c = make_copies(rng, p, geo, "dwp")
    j = c.pidx
    nino = p.nino[j].tolist()
    bad_nino = np.flatnonzero(rng.random(len(j)) < 0.001)
    for i in bad_nino:
        nino[i] = "QQ" + nino[i][2:]
        c.errors[i].append("bad_nino")
    spaced = rng.random(len(j)) < 0.2
    nino = [f"{v[:2]} {v[2:4]} {v[4:6]} {v[6:8]} {v[8]}" if s else v for v, s in zip(nino, spaced.tolist(), strict=True)]
    has_wca = outcome[j] != ""
    frame = pd.DataFrame(
        {
            "nino": nino,
            "forename": c.given,
            "middle_names": c.middle,
            "surname": [f.upper() for f in c.family],
            "date_of_birth": _dates(c, "dmy"),
            "sex": p.sex[j],
            "address_line_1": c.address,
            "address_line_2": "",
            "town": c.town,
            "postcode": c.postcode,
            "benefit_type": [benefits[k] for k in j.tolist()],
            "claim_start_date": _iso(claim_start[j]),
            "wca_outcome": outcome[j],
            "wca_condition_group": condition[j],
            "wca_date": np.where(has_wca, np.array(_iso(wca_date[j]), dtype=object), ""),
            "sanctions_12m": sanctions[j],
            "unemployment_spells_5y": spells[j],
            "months_unemployed": months[j],
            "lone_parent": np.where(car[j] >= 2, "Y", "N"),
            "skills_need": skills[j],
            "extract_date": str(REF_DATE),
        }
    )
    return frame, c


# --------------------------------------------------------------------------- housing


def housing_frame(rng: np.random.Generator, p: People, geo: Geography) -> tuple[pd.DataFrame, Copies]:
    n = len(p)
    fin = p.severity[:, _B["FIN"]]
    hou = p.severity[:, _B["HOU"]]
    arrears = _between(rng, np.array([0, 20, 40, 80])[fin], np.array([15, 39, 79, 200])[fin]) / 10.0
    arrears = np.where((fin == 0) & (rng.random(n) < 0.6), 0.0, arrears)
    stage = np.array(["", "prevention", "relief", "main_duty"], dtype=object)[hou]
    notice = np.array(["", "", "s21", "s8"], dtype=object)[hou]
    notice = np.where((hou == 3) & (rng.random(n) < 0.5), "possession_order", notice)
    temporary = np.where(hou == 3, "Y", "N")
    start = REF_DATE - rng.integers(60, 6000, size=n).astype("timedelta64[D]")
    updated = REF_DATE - rng.integers(0, 60, size=n).astype("timedelta64[D]")

    c = make_copies(rng, p, geo, "housing")
    j = c.pidx
    k = len(j)
    has_nino = rng.random(k) < 0.6
    postcode = [
        None if v is None else (v.replace(" ", "") if r < 0.03 else v.lower() if r < 0.05 else v)
        for v, r in zip(c.postcode, rng.random(k).tolist(), strict=True)
    ]
    frame = pd.DataFrame(
        {
            "tenant_forename": c.given,
            "tenant_surname": c.family,
            "tenant_dob": _dates(c, "dmy"),
            "ni_number": np.where(has_nino, p.nino[j], ""),
            "property_address": [f"{a}, {t}" for a, t in zip(c.address, c.town, strict=True)],
            "postcode": postcode,
            "tenancy_start": _iso(start[j]),
            "rent_arrears_weeks": arrears[j],
            "temporary_accommodation": temporary[j],
            "homelessness_stage": stage[j],
            "eviction_notice": notice[j],
            "last_updated": _iso(updated[j]),
        }
    )
    return frame, c


# --------------------------------------------------------------------------- council


def council_rows(rng: np.random.Generator, p: People, geo: Geography) -> tuple[dict[str, list[dict]], Copies]:
    """Rows per council table; service rows use placeholder person refs (the copy index)."""
    c = make_copies(rng, p, geo, "council")
    j = c.pidx
    k = len(j)
    has_nhs = rng.random(k) < 0.5
    spaced = rng.random(k) < 0.3
    bad_nhs = has_nhs & (rng.random(k) < 0.003)
    nhs_values: list[str | None] = []
    for i, v in enumerate(p.nhs[j].tolist()):
        if not has_nhs[i]:
            nhs_values.append(None)
            continue
        if bad_nhs[i]:
            v = _bad_nhs(v)
            c.errors[i].append("bad_nhs")
        nhs_values.append(_spaced_nhs(v) if spaced[i] else v)
    has_nino = rng.random(k) < 0.4
    dob = _dates(c, "iso")
    updated = REF_DATE - rng.integers(0, 400, size=k).astype("timedelta64[D]")
    updated_iso = _iso(updated)
    residents = [
        {
            "person_ref": i,
            "forename": c.given[i],
            "middle_names": c.middle[i] or None,
            "surname": c.family[i],
            "date_of_birth": dob[i],
            "sex": p.sex[j[i]],
            "nhs_number": nhs_values[i],
            "ni_number": p.nino[j[i]] if has_nino[i] else None,
            "address_line_1": c.address[i],
            "address_line_2": None,
            "town": c.town[i],
            "postcode": c.postcode[i],
            "updated_on": updated_iso[i],
        }
        for i in range(k)
    ]
    sev = p.severity
    ctax, leavers, social, families = [], [], [], []
    ref = str(REF_DATE)
    for i in np.flatnonzero(c.original).tolist():
        q = j[i]
        fin, dis, car = int(sev[q, _B["FIN"]]), int(sev[q, _B["DIS"]]), int(sev[q, _B["CAR"]])
        if fin or rng.random() < 0.75:
            lo, hi = ((0, 0), (100, 399), (400, 1199), (1200, 3000))[fin]
            arrears = round(float(rng.uniform(lo, hi)), 2) if fin else 0.0
            hb = round(float(rng.uniform(200, 1500)), 2) if fin == 3 and rng.random() < 0.5 else None
            ctax.append({"person_ref": i, "ctax_arrears_gbp": arrears, "hb_overpayment_gbp": hb, "as_at": ref})
        if sev[q, _B["CLV"]]:
            left = p.dob[q] + np.timedelta64(18 * 365 + 5, "D")
            leavers.append({"person_ref": i, "left_care_on": str(left), "recorded_on": str(REF_DATE - np.timedelta64(int(rng.integers(0, 300)), "D"))})
        status = {2: "assessed", 3: "eligible"}.get(dis)
        if status or car:
            social.append(
                {
                    "person_ref": i,
                    "care_act_status": status,
                    "carer_assessment": bool(car),
                    "assessed_on": str(REF_DATE - np.timedelta64(int(rng.integers(10, 500)), "D")),
                }
            )
        if sev[q, _B["FAM"]] or rng.random() < 0.04:
            families.append(
                {
                    "person_ref": i,
                    "case_status": "open" if sev[q, _B["FAM"]] else "closed",
                    "opened_on": str(REF_DATE - np.timedelta64(int(rng.integers(30, 900)), "D")),
                }
            )
    tables = {
        "residents": residents,
        "ctax_accounts": ctax,
        "care_leavers": leavers,
        "adult_social_care": social,
        "supporting_families": families,
    }
    return tables, c


# --------------------------------------------------------------------------- NHS (FHIR)


def _uuid(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
    out = []
    for a, b in raw.tolist():
        h = f"{a:016x}{b:016x}"
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}")
    return out


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


_SERVICES = {
    "secondary-mental-health": "Secondary mental health services",
    "talking-therapies": "NHS Talking Therapies",
    "drug-alcohol": "Drug and alcohol treatment services",
}


def nhs_bundles(rng: np.random.Generator, p: People, geo: Geography) -> tuple[list[dict], Copies, list[str]]:
    c = make_copies(rng, p, geo, "nhs")
    j = c.pidx
    k = len(j)
    ids = _uuid(rng, k)
    dob = _dates(c, "iso")
    missing_nhs = rng.random(k) < 0.01
    bad_nhs = ~missing_nhs & (rng.random(k) < 0.003)
    sev = p.severity
    entries: list[tuple[int, list[dict]]] = []  # per copy: its resources
    resource_ids = iter(_uuid(rng, 4 * k + 8))
    ltc_pick = rng.integers(0, len(LTC_CONCEPTS), size=(k, 2))
    for i in range(k):
        q = j[i]
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": ids[i],
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
        }
        if not missing_nhs[i]:
            nhs = p.nhs[q]
            if bad_nhs[i]:
                nhs = _bad_nhs(nhs)
                c.errors[i].append("bad_nhs")
            patient["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
        else:
            c.errors[i].append("missing_nhs")
        given = [c.given[i]] + ([c.middle[i]] if c.middle[i] else [])
        patient["name"] = [{"use": "official", "family": c.family[i], "given": given}]
        patient["gender"] = "female" if p.sex[q] == "F" else "male"
        patient["birthDate"] = dob[i]
        address: dict[str, Any] = {"use": "home", "line": [c.address[i]], "city": c.town[i]}
        if c.postcode[i] is not None:
            address["postalCode"] = c.postcode[i]
        patient["address"] = [address]
        resources = [patient]
        if c.original[i]:
            resources += _clinical(rng, sev[q], ids[i], resource_ids, ltc_pick[i])
        entries.append((i, resources))
    bundles = []
    for b in range(0, k, BUNDLE_SIZE):
        entry = [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r}
            for _, resources in entries[b : b + BUNDLE_SIZE]
            for r in resources
        ]
        bundles.append(
            {
                "resourceType": "Bundle",
                "id": next(resource_ids),
                "type": "collection",
                "timestamp": f"{REF_DATE}T00:00:00Z",
                "entry": entry,
            }
        )
    return bundles, c, ids


def _clinical(rng: np.random.Generator, sev: np.ndarray, patient_id: str, ids, ltc_pick) -> list[dict]:
    out: list[dict] = []
    subject = {"reference": f"urn:uuid:{patient_id}"}

    def episode(service: str, active: bool) -> dict:
        start = REF_DATE - np.timedelta64(int(rng.integers(60, 900)), "D")
        period = {"start": str(start)}
        if not active:
            period["end"] = str(REF_DATE - np.timedelta64(int(rng.integers(1, 55)), "D"))
        return {
            "resourceType": "EpisodeOfCare",
            "id": next(ids),
            "status": "active" if active else "finished",
            "type": [_coding(SERVICE_TYPE_SYSTEM, service, _SERVICES[service])],
            "patient": subject,
            "period": period,
        }

    mh, sub, ph = int(sev[_B["MH"]]), int(sev[_B["SUB"]]), int(sev[_B["PH"]])
    if mh == 3:
        out.append(episode("secondary-mental-health", True))
    elif mh:
        out.append(episode("talking-therapies", mh == 2))
    if sub:
        out.append(episode("drug-alcohol", sub >= 2))
    for pick in ltc_pick[: 2 if ph == 3 else 1] if ph else []:
        code, display, _group = LTC_CONCEPTS[int(pick)]
        recorded = REF_DATE - np.timedelta64(int(rng.integers(30, 2000)), "D")
        out.append(
            {
                "resourceType": "Condition",
                "id": next(ids),
                "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "category": [_coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")],
                "code": _coding(SNOMED, code, display),
                "subject": subject,
                "recordedDate": str(recorded),
            }
        )
    return out


# --------------------------------------------------------------------------- writing


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path, mode="a", header=self.rows == 0, index=False)
        self.rows += len(frame)


def _council_engine(dsn: str) -> sa.Engine:
    engine = sa.create_engine(dsn)
    if engine.dialect.name == "sqlite":
        # A throwaway file written under a temporary name: durability is not needed here.
        @sa.event.listens_for(engine, "connect")
        def _fast(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            dbapi_conn.execute("PRAGMA journal_mode=OFF")
            dbapi_conn.execute("PRAGMA synchronous=OFF")

    return engine


def _as_dates(rows: list[dict], *keys: str) -> list[dict]:
    from datetime import date

    for row in rows:
        for key in keys:
            if row.get(key) is not None:
                row[key] = date.fromisoformat(row[key])
    return rows


def write_synthetic_sources(out: Path, people: int, seed: int, council_dsn: str | None = None) -> dict:
    """Write the four agencies' sources and the truth files under `out`; returns a summary."""
    if people < 1:
        raise ValueError("people must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    try:
        summary = _write_all(tmp, out, people, seed, council_dsn)
        for name in ("dwp_claimants.csv", "housing_tenancies.csv", "ground_truth.csv", "people_truth.csv", "council.sqlite"):
            if (tmp / name).exists():
                os.replace(tmp / name, out / name)
        if (out / "nhs").exists():
            shutil.rmtree(out / "nhs")
        os.replace(tmp / "nhs", out / "nhs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _write_all(tmp: Path, out: Path, people: int, seed: int, council_dsn: str | None) -> dict:
    geo = build_geography(seed, people)
    dwp = _CsvSink(tmp / "dwp_claimants.csv")
    housing = _CsvSink(tmp / "housing_tenancies.csv")
    truth = _CsvSink(tmp / "ground_truth.csv")
    ptruth = _CsvSink(tmp / "people_truth.csv")
    (tmp / "nhs").mkdir()
    dsn = council_dsn or f"sqlite:///{tmp / 'council.sqlite'}"
    engine = _council_engine(dsn)
    counts = dict.fromkeys(SOURCES, 0)
    errors_planted: dict[str, int] = {}
    seq = {"ctax": 0, "asc": 0, "sf": 0}
    bundle_no = 0
    try:
        with engine.begin() as conn:
            council_schema.SCHEMA.drop_all(conn)
            council_schema.SCHEMA.create_all(conn)
            for chunk_no, start in enumerate(range(0, people, CHUNK)):
                rng = np.random.default_rng([seed, chunk_no])
                p = make_people(rng, start, min(CHUNK, people - start), seed, geo)
                truth_parts = []

                frame, c = dwp_frame(rng, p, geo)
                local = [f"CLM{counts['dwp'] + i + 1:08d}" for i in range(len(frame))]
                frame.insert(0, "claimant_id", local)
                dwp.write(frame)
                truth_parts.append(_truth("dwp", local, p, c))
                counts["dwp"] += len(frame)

                tables, c = council_rows(rng, p, geo)
                local = [f"CR{counts['council'] + i + 1:08d}" for i in range(len(c.pidx))]
                for row in tables["residents"]:
                    row["person_ref"] = local[row["person_ref"]]
                _as_dates(tables["residents"], "updated_on")
                for name, prefix, key in (("ctax_accounts", "CT", "ctax"), ("adult_social_care", "AS", "asc"), ("supporting_families", "SF", "sf")):
                    for row in tables[name]:
                        seq[key] += 1
                        row[{"ctax_accounts": "account_ref"}.get(name, "case_ref")] = f"{prefix}{seq[key]:08d}"
                for name, rows in tables.items():
                    if name == "residents":
                        continue
                    for row in rows:
                        row["person_ref"] = local[row["person_ref"]]
                    _as_dates(rows, "as_at", "left_care_on", "recorded_on", "assessed_on", "opened_on")
                for table in council_schema.SCHEMA.sorted_tables:
                    if tables[table.name]:
                        conn.execute(table.insert(), tables[table.name])
                truth_parts.append(_truth("council", local, p, c))
                counts["council"] += len(local)

                bundles, c, ids = nhs_bundles(rng, p, geo)
                for bundle in bundles:
                    bundle_no += 1
                    (tmp / "nhs" / f"bundle-{bundle_no:05d}.json").write_text(json.dumps(bundle, separators=(",", ":")))
                truth_parts.append(_truth("nhs", ids, p, c))
                counts["nhs"] += len(ids)

                frame, c = housing_frame(rng, p, geo)
                local = [f"TEN{counts['housing'] + i + 1:07d}" for i in range(len(frame))]
                frame.insert(0, "tenancy_ref", local)
                housing.write(frame)
                truth_parts.append(_truth("housing", local, p, c))
                counts["housing"] += len(frame)

                gt = pd.concat(truth_parts, ignore_index=True)
                truth.write(gt)
                for tags in gt["errors"]:
                    for tag in filter(None, tags.split(";")):
                        errors_planted[tag] = errors_planted.get(tag, 0) + 1
                ptruth.write(_people_truth(p, geo))
    finally:
        engine.dispose()
    council_where = "council.sqlite" if council_dsn is None else sa.make_url(council_dsn).render_as_string(hide_password=True)
    return {
        "people": people,
        "seed": seed,
        "out": str(out),
        "records": counts,
        "council": council_where,
        "nhs_bundles": bundle_no,
        "errors_planted": dict(sorted(errors_planted.items())),
    }


def _truth(source: str, local: list[str], p: People, c: Copies) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": source,
            "local_id": local,
            "person_id": p.person_id[c.pidx],
            "errors": [";".join(e) for e in c.errors],
        }
    )


def _people_truth(p: People, geo: Geography) -> pd.DataFrame:
    frame = pd.DataFrame({"person_id": p.person_id})
    for k, code in enumerate(BARRIERS):
        frame[code] = p.severity[:, k]
    frame["barrier_count"] = (p.severity > 0).sum(axis=1)
    frame["postcode_sector"] = geo.sector[p.unit]
    frame["ward"] = geo.ward[p.unit]
    for source in SOURCES:
        frame[f"in_{source}"] = p.member[source].astype(int)
    return frame
