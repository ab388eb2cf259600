"""The synthetic population: identities, addresses, planted barriers, agency membership,
and the (imperfect) copies of a person that each agency's records hold.

See `connectors.synth` for the planting rules and the files written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from connectors import synth_errors as err
from connectors import synth_names as names

BARRIERS = ("MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "WRK")
_B = {code: i for i, code in enumerate(BARRIERS)}
# Relative prevalence of each barrier area (multiplies the latent class's rate).
_BARRIER_WEIGHT = np.array([1.6, 1.3, 1.0, 0.6, 0.9, 1.6, 1.3, 1.0, 0.8, 0.6, 1.3])
# Latent disadvantage classes: share of adults and per-barrier base rate.
_CLASS_SHARE = (0.63, 0.30, 0.07)
_CLASS_RATE = np.array([0.025, 0.10, 0.45])

REF_DATE = np.datetime64("2025-11-01")  # the "as at" date of every extract (fixed: determinism)
DUPLICATE_RATE = 0.03
SOURCES = ("dwp", "council", "nhs", "housing")

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
    dob = p.dob[pidx]
    months = dob.astype("datetime64[M]")
    y = months.astype("datetime64[Y]").astype(np.int64) + 1970
    m = months.astype(np.int64) % 12 + 1
    d = (dob - months).astype(np.int64) + 1
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
