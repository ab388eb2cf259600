"""Standardisation and validation of identity fields, the one place raw values are cleaned.

`standardise_identity(raw, mapping)` turns one record's raw identity (strings under the
`IDENTITY_FIELDS` names) into a `StandardIdentity` plus a list of `Problem`s.

Rules (documented in docs/CONNECTORS.md too):
- Names: accents stripped (NFKD), lower case, punctuation removed (O'Brien -> obrien),
  hyphens and runs of spaces become one space, titles (mr, mrs, dr ...) and suffixes
  (jr, snr, iii ...) removed. The first given name is `given`; further given names join
  the middle names. `given_canon` is the nickname table's canonical form (bill -> william,
  `connectors/data/nicknames.csv`), else the name itself. Phonetic codes: Metaphone (jellyfish; it
  groups Smith/Smyth and Catherine/Kathryn, which NYSIIS does not).
  recordlinkage's `preprocessing.clean` works on whole pandas Series; the same steps are
  done here per distinct value with a cache, which is what makes the batch path fast.
- Dates of birth: the mapping's `format` when given, else ISO (1990-03-15), UK
  (15/03/1990, 15-03-1990, 15.03.1990), compact (19900315), "15 Mar 1990", ISO with a
  time. Impossible dates (31/02/1990), dates in the future or before 1900 are refused.
- Postcodes: upper case, one space before the inward code ("CT9 1AB"); UK format
  checked unless the mapping says `validate = false` (then kept as the upper-case value
  without spaces, and no sector/district). Sector "CT9 1", district "CT9".
- NINO: two prefix letters, six digits, optional suffix A-D; administrative prefixes
  (BG GB KN NK NT TN ZZ) and invalid letters refused. The standard form is the 8-char
  stem (prefix + digits), because sources differ in whether they keep the suffix.
- NHS number: 10 digits with a valid modulus-11 check digit.
- Sex: M / F / X (other, indeterminate); unknown -> none.

Which problems are fatal (the row is rejected), which only drop the field (row kept,
with a `field_dropped` note). A row is usable when it has
  1. a local id (without one the source could never map a link back to its record),
  2. at least one name part, given or family, and
  3. at least one further identifying value: a valid date of birth, NHS number or NINO,
     or a postcode, or an address.
Why: a name plus a postcode or an address still links (the linkage compares the name
and address CLKs and the postcode tokens; FEBRL-style sources have many rows without a
date of birth that are still true matches), whereas a bare name matches everybody of
that name and would only add false links. Locality and sex alone are too coarse to
count. The fatal problem names the field `date_of_birth` (the usual missing piece) and
lists the alternatives in its reason. Everything else that is invalid is dropped from
the row and the row kept.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from operator import mul
from pathlib import Path

import jellyfish
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.mapping import FieldSpec, Mapping

NICKNAMES_FILE = Path(__file__).parent / "data" / "nicknames.csv"
EARLIEST_BIRTH_YEAR = 1900

TITLES = frozenset(
    "mr mrs ms miss mx dr prof rev revd sir dame lady lord master fr sr sister".split()
)
SUFFIXES = frozenset("jr jnr junior sr snr senior ii iii iv".split())

_PUNCT_DROP = re.compile(r"[^a-z\s\-]")  # after accent folding: keep letters, space, hyphen
_SPACES = re.compile(r"[\s\-]+")
_ADDR_DROP = re.compile(r"[^a-z0-9\s]")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_UK = re.compile(r"^(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_NINO = re.compile(r"^([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])(\d{6})([A-D]?)$")
_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_TEXT_DATE_FORMATS = ("%d %b %Y", "%d %B %Y", "%Y/%m/%d", "%d/%m/%y")

# Common street-type abbreviations, expanded so "12 High St." and "12 High Street" agree.
_ADDRESS_WORDS = {
    "rd": "road", "st": "street", "ave": "avenue", "av": "avenue", "ln": "lane",
    "dr": "drive", "ct": "court", "cres": "crescent", "cl": "close", "pl": "place",
    "sq": "square", "gdns": "gardens", "gr": "grove", "tce": "terrace", "ter": "terrace",
    "pde": "parade", "hse": "house", "apt": "flat", "apartment": "flat", "no": "",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One issue found in a record: the field, why, and whether it refuses the row."""

    field: str
    reason: str
    fatal: bool


@dataclass(slots=True)
class StandardIdentity:
    """A record's identity after standardisation. Still raw: never leaves the connector."""

    local_id: str | None = None
    nhs_number: str | None = None
    nino: str | None = None
    given: str | None = None
    given_canon: str | None = None
    given_phon: str | None = None
    middle: str | None = None
    family: str | None = None
    family_phon: str | None = None
    dob: date | None = None
    sex: str | None = None
    postcode: str | None = None
    pc_sector: str | None = None
    pc_district: str | None = None
    address: str | None = None
    locality: str | None = None

    @property
    def usable(self) -> bool:
        return unusable_reason(self) is None


class StandardisationError(ValueError):
    """An identity cannot be standardised enough for its purpose (e.g. a person key)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))


# ---------------------------------------------------------------- names


@lru_cache(maxsize=1)
def nickname_table() -> dict[str, str]:
    with NICKNAMES_FILE.open(newline="") as fh:
        return {row["nickname"]: row["canonical"] for row in csv.DictReader(fh)}


def fold_accents(text: str) -> str:
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def name_words(raw: str) -> tuple[str, ...]:
    """Clean name words: 'Dr. Anne-Marie  O'Brien Jr' -> ('anne', 'marie', 'obrien')."""
    text = _PUNCT_DROP.sub("", fold_accents(raw).lower())
    words = [w for w in _SPACES.split(text) if w]
    while words and words[0] in TITLES:
        words.pop(0)
    while words and words[-1] in SUFFIXES:
        words.pop()
    return tuple(words)


@lru_cache(maxsize=200_000)
def canonical_given(given: str) -> str:
    return nickname_table().get(given, given)


@lru_cache(maxsize=200_000)
def phonetic(name: str) -> str:
    """Metaphone of the name without spaces (multi-word family names coded as one)."""
    return jellyfish.metaphone(name.replace(" ", ""))


# ---------------------------------------------------------------- dates


@lru_cache(maxsize=200_000)
def parse_date(raw: str, fmt: str | None = None) -> date:
    """A date from the common formats (or `fmt`); ValueError says why it is refused."""
    text = raw.strip()
    if fmt:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError as exc:
            raise ValueError(f"not a valid date in format {fmt}") from exc
    for pattern, order in ((_ISO, "ymd"), (_UK, "dmy"), (_COMPACT, "ymd")):
        m = pattern.match(text)
        if m:
            parts = dict(zip(order, (int(g) for g in m.groups()[:3]), strict=True))
            try:
                return date(parts["y"], parts["m"], parts["d"])
            except ValueError as exc:
                raise ValueError("impossible date") from exc
    for f in _TEXT_DATE_FORMATS:
        try:
            return datetime.strptime(text, f).date()
        except ValueError:
            continue
    raise ValueError("unrecognised date format")


def parse_birth_date(raw: str, fmt: str | None = None, today: date | None = None) -> date:
    d = parse_date(raw, fmt)
    if d.year < EARLIEST_BIRTH_YEAR:
        raise ValueError(f"date of birth before {EARLIEST_BIRTH_YEAR}")
    if d > (today or date.today()):
        raise ValueError("date of birth in the future")
    return d


def swap_day_month(d: date) -> date | None:
    """The date with day and month exchanged, if that is a real date (else None)."""
    if d.day > 12 or d.day == d.month:
        return None
    return date(d.year, d.day, d.month)


# ---------------------------------------------------------------- identifiers


@lru_cache(maxsize=200_000)
def standard_postcode(raw: str, validate: bool = True) -> tuple[str, str | None, str | None]:
    """(postcode, sector, district); ValueError when it is not a UK postcode."""
    compact = "".join(raw.split()).upper()
    m = _POSTCODE.match(compact)
    if m:
        outward, inward = m.groups()
        return f"{outward} {inward}", f"{outward} {inward[0]}", outward
    if validate:
        raise ValueError("not a UK postcode")
    if not compact.isalnum():
        raise ValueError("postcode has characters other than letters and digits")
    return compact, None, None


def standard_nino(raw: str) -> str:
    compact = "".join(raw.split()).upper()
    m = _NINO.match(compact)
    if not m or m.group(1) in _NINO_BAD_PREFIXES:
        raise ValueError("not a valid NINO format")
    return m.group(1) + m.group(2)


def nhs_check_digit_ok(digits: str) -> bool:
    """Modulus 11: weights 10..2 over the first nine digits; 11 -> 0, 10 -> invalid."""
    if len(digits) != 10 or not digits.isdigit() or not digits.isascii():
        return False
    # ASCII codes minus 48 are the digits: one C-level pass instead of nine int() calls.
    total = sum(map(mul, digits.encode()[:9], _NHS_WEIGHTS)) - 48 * 54
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def standard_nhs_number(raw: str) -> str:
    digits = raw.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        raise ValueError("not 10 digits")
    if not nhs_check_digit_ok(digits):
        raise ValueError("invalid check digit")
    return digits


# ------------------------------------------------ batch fast paths (NHS number, NINO)
#
# Nearly every value is unique, so the batch path cannot cache them. These check the common,
# clean shapes for a whole column at once; whatever they do not accept goes through the
# per-value functions above, which decide it (and word the refusal) exactly as before.

_NHS_FAST = r"^[0-9]{10}$"
_NINO_FAST = r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]?$"
_NHS_WEIGHTS_NP = np.array(_NHS_WEIGHTS, dtype=np.int64)


def nhs_numbers_fast(values: pa.StringArray) -> tuple[np.ndarray, pa.Array]:
    """(accepted, standard form) per value: accepted values are what standard_nhs_number returns.

    A value not accepted here may still be valid (e.g. other digit scripts): decide it per value."""
    compact = pc.replace_substring(pc.replace_substring(values, " ", ""), "-", "")
    shaped = pc.match_substring_regex(compact, _NHS_FAST).to_numpy(zero_copy_only=False)
    accepted = np.zeros(len(values), dtype=bool)
    if shaped.any():
        cand = compact.filter(pa.array(shaped))
        # Every candidate is 10 ASCII digits, so the data buffer is an (n, 10) matrix of bytes.
        offsets = np.frombuffer(cand.buffers()[1], dtype=np.int32)[cand.offset: cand.offset + len(cand) + 1]
        digits = np.frombuffer(cand.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
        digits = digits.reshape(-1, 10).astype(np.int64) - 48
        check = 11 - (digits[:, :9] @ _NHS_WEIGHTS_NP) % 11
        check[check == 11] = 0
        accepted[shaped] = (check != 10) & (check == digits[:, 9])
    return accepted, compact


def ninos_fast(values: pa.StringArray) -> tuple[np.ndarray, pa.Array]:
    """(accepted, standard form) per value: accepted values are what standard_nino returns.

    Only ASCII values whose only whitespace is spaces are decided here; anything else
    (and every refusal) is left to standard_nino per value."""
    compact = pc.ascii_upper(pc.replace_substring(values, " ", ""))
    shaped = pc.and_(pc.string_is_ascii(values), pc.match_substring_regex(compact, _NINO_FAST))
    prefix_ok = pc.invert(pc.is_in(pc.utf8_slice_codeunits(compact, 0, 2),
                                   value_set=pa.array(sorted(_NINO_BAD_PREFIXES))))
    accepted = pc.and_(shaped, prefix_ok).to_numpy(zero_copy_only=False)
    return accepted, pc.utf8_slice_codeunits(compact, 0, 8)


_SEX = {
    "m": "M", "male": "M", "1": "M", "man": "M",
    "f": "F", "female": "F", "2": "F", "woman": "F",
    "x": "X", "other": "X", "i": "X", "indeterminate": "X", "9": None,
    "u": None, "unknown": None, "0": None, "n": None, "not known": None,
}


def standard_sex(raw: str) -> str | None:
    key = raw.strip().lower()
    if key not in _SEX:
        raise ValueError("unrecognised sex code")
    return _SEX[key]


@lru_cache(maxsize=100_000)
def standard_text(raw: str) -> str | None:
    """Addresses and localities: folded, lower case, punctuation removed, street words expanded."""
    words = _ADDR_DROP.sub(" ", fold_accents(raw).lower()).split()
    if not _ADDRESS_WORDS.keys().isdisjoint(words):  # most addresses need no expansion
        words = [w for w in map(_ADDRESS_WORDS.get, words, words) if w]
    return " ".join(words) or None


# ---------------------------------------------------------------- the record


def _spec(mapping: Mapping | None, name: str) -> FieldSpec | None:
    return mapping.identity.get(name) if mapping is not None else None


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def unusable_reason(ident: StandardIdentity) -> Problem | None:
    """Why a standardised identity cannot be linked at all, or None when it can."""
    if not ident.local_id:
        return Problem("local_id", "missing local id", True)
    if not ident.given and not ident.family:
        return Problem("name", "no given or family name", True)
    if (
        ident.dob is None
        and not ident.nhs_number
        and not ident.nino
        and not ident.postcode
        and not ident.address
    ):
        return Problem(
            "date_of_birth", "no valid date of birth, NHS number, NINO, postcode or address", True
        )
    return None


def standardise_identity(
    raw: dict[str, str | None], mapping: Mapping | None = None, today: date | None = None
) -> tuple[StandardIdentity, list[Problem]]:
    """Standardise one raw identity. Problems list dropped fields, then a fatal one if any."""
    out = StandardIdentity()
    problems: list[Problem] = []

    def drop(field_name: str, reason: str) -> None:
        problems.append(Problem(field_name, reason, False))

    local_id = raw.get("local_id")
    out.local_id = local_id.strip() if not _blank(local_id) else None

    given_raw, middle_raw, family_raw = raw.get("given_name"), raw.get("middle_names"), raw.get("family_name")
    given_words = name_words(given_raw) if not _blank(given_raw) else ()
    middle_words = list(name_words(middle_raw)) if not _blank(middle_raw) else []
    if given_words:
        out.given = given_words[0]
        middle_words = list(given_words[1:]) + middle_words
        out.given_canon = canonical_given(out.given)
        out.given_phon = phonetic(out.given)
    elif not _blank(given_raw):
        drop("given_name", "no letters after cleaning")
    if middle_words:
        out.middle = " ".join(middle_words)
    if not _blank(family_raw):
        family_words = name_words(family_raw)
        if family_words:
            out.family = " ".join(family_words)
            out.family_phon = phonetic(out.family)
        else:
            drop("family_name", "no letters after cleaning")

    dob_raw = raw.get("date_of_birth")
    if not _blank(dob_raw):
        spec = _spec(mapping, "date_of_birth")
        try:
            out.dob = parse_birth_date(dob_raw, spec.format if spec else None, today)
        except ValueError as exc:
            drop("date_of_birth", str(exc))

    postcode_raw = raw.get("postcode")
    if not _blank(postcode_raw):
        spec = _spec(mapping, "postcode")
        try:
            out.postcode, out.pc_sector, out.pc_district = standard_postcode(
                postcode_raw, spec.validate if spec else True
            )
        except ValueError as exc:
            drop("postcode", str(exc))

    for name, fn, attr in (
        ("nino", standard_nino, "nino"),
        ("nhs_number", standard_nhs_number, "nhs_number"),
        ("sex", standard_sex, "sex"),
    ):
        value = raw.get(name)
        if _blank(value):
            continue
        spec = _spec(mapping, name)
        if spec is not None and not spec.validate and name != "sex":
            setattr(out, attr, "".join(value.split()).upper())  # kept as given, unvalidated
            continue
        try:
            setattr(out, attr, fn(value))
        except ValueError as exc:
            drop(name, str(exc))

    for name in ("address", "locality"):
        value = raw.get(name)
        if not _blank(value):
            setattr(out, name, standard_text(value))

    fatal = unusable_reason(out)
    if fatal is not None:
        problems.append(fatal)
    return out, problems
