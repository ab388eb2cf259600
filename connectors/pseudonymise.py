"""Pseudonymisation: keyed tokens, Bloom-filter encodings (CLKs) and keyed blocking keys.

Everything here is keyed (keys from `connectors.keys.KeyRing`, HKDF per linkage project):
- Token = first 8 bytes of HMAC-SHA256(token_key(group), value) as a signed big-endian
  int64. Columns that should be comparable with each other share a key group:
  tk_given / tk_given_canon / tk_middle / tk_family use group "name" (so a given/family
  swap or a nickname can be spotted by equality across columns), tk_given_phon /
  tk_family_phon use "name_phon", tk_dob / tk_dob_swap use "dob"; every other column has
  its own group named after the column (tk_nhs -> "nhs_number", tk_pc_sector ->
  "pc_sector", ...).
- CLK: the bigrams of the standardised value padded with "_" ("_bill_" -> _b bi il ll l_);
  each distinct bigram gets k bit positions from HMAC-SHA256(clk_key(field), i || bigram)
  (independent positions, not double hashing, which is known to be attackable), set in a
  filter of `clk_bits` bits. clk_name is the union of the given- and family-name bigrams
  (so it survives a given/family swap). clk_address is the union over the address's words,
  each word padded on its own ("_12_ _high_ _street_"), so word order does not matter.
  Defaults: 1024 bits, k = 20 (k = 10 for the address, whose strings are long and would
  otherwise saturate the filter).
- Blocking key = a keyed 64-bit mix of tokens the row already carries: a per-rule seed
  HMAC-SHA256(blocking_key(), "blocking-rule|<column>") folded with each part token by the
  splitmix64 finaliser (bk_fam_yob = tk_family_phon + tk_dob_year; bk_given_dob =
  tk_given_canon + tk_dob; bk_pc_given = tk_postcode + tk_given_phon; bk_fam_dob_md =
  tk_family_phon + tk_dob_month + tk_dob_day). It reveals nothing the tokens do not, is
  unlinkable across projects (keyed seed, keyed tokens) and needs no hashing per record.

Hardening (`hardening = "blip"`): BLIP randomised response (Schnell & Borgs 2016): after
encoding, each bit of every CLK is flipped with probability `blip_f` (default 0.02) from a
random source that is not reproducible. It blunts frequency attacks on the filters (the
same name no longer gives the same filter) at some cost in Dice separation (measured by
bench/bench_extract.py --separation, figures in bench/RESULTS-extract.md).

Speed: every distinct value is tokenised once per key (per-field caches), every distinct
bigram is hashed once per key, and CLKs of a batch are built with numpy (OR-reduce of the
cached bigram bit vectors). HMACs use `KeyedHash` (pre-keyed SHA-256 states). The extract
uses the column-wise batch path in `connectors.columnar`, which gives the same columns.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa

from connectors.keys import KeyRing
from connectors.mapping import Mapping
from connectors.standardise import (
    StandardIdentity,
    StandardisationError,
    standardise_identity,
    swap_day_month,
)

TOKEN_BYTES = 8
_CACHE_LIMIT = 300_000  # entries per field cache before it is cleared (bounds memory)

# (column, key group, how to get the standardised value)
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tk_nhs", "nhs_number"),
    ("tk_nino", "nino"),
    ("tk_given", "name"),
    ("tk_given_canon", "name"),
    ("tk_given_phon", "name_phon"),
    ("tk_middle", "name"),
    ("tk_family", "name"),
    ("tk_family_phon", "name_phon"),
    ("tk_dob", "dob"),
    ("tk_dob_swap", "dob"),
    ("tk_dob_year", "dob_year"),
    ("tk_dob_month", "dob_month"),
    ("tk_dob_day", "dob_day"),
    ("tk_sex", "sex"),
    ("tk_postcode", "postcode"),
    ("tk_pc_sector", "pc_sector"),
    ("tk_pc_district", "pc_district"),
    ("tk_locality", "locality"),
)
CLK_COLUMNS = ("clk_name", "clk_given", "clk_family", "clk_address")
BLOCKING_COLUMNS = ("bk_fam_yob", "bk_given_dob", "bk_pc_given", "bk_fam_dob_md")
LINKAGE_COLUMNS = ("ref",) + tuple(c for c, _ in TOKEN_COLUMNS) + CLK_COLUMNS + BLOCKING_COLUMNS


def _dob_iso(i: StandardIdentity) -> str | None:
    return i.dob.isoformat() if i.dob else None


def _dob_swap(i: StandardIdentity) -> str | None:
    swapped = swap_day_month(i.dob) if i.dob else None
    return swapped.isoformat() if swapped else None


# How each token column's value is read from a StandardIdentity.
_TOKEN_VALUE = {
    "tk_nhs": lambda i: i.nhs_number,
    "tk_nino": lambda i: i.nino,
    "tk_given": lambda i: i.given,
    "tk_given_canon": lambda i: i.given_canon,
    "tk_given_phon": lambda i: i.given_phon,
    "tk_middle": lambda i: i.middle,
    "tk_family": lambda i: i.family,
    "tk_family_phon": lambda i: i.family_phon,
    "tk_dob": _dob_iso,
    "tk_dob_swap": _dob_swap,
    "tk_dob_year": lambda i: f"{i.dob.year:04d}" if i.dob else None,
    "tk_dob_month": lambda i: f"{i.dob.month:02d}" if i.dob else None,
    "tk_dob_day": lambda i: f"{i.dob.day:02d}" if i.dob else None,
    "tk_sex": lambda i: i.sex,
    "tk_postcode": lambda i: i.postcode,
    "tk_pc_sector": lambda i: i.pc_sector,
    "tk_pc_district": lambda i: i.pc_district,
    "tk_locality": lambda i: i.locality,
}


# Each blocking key mixes tokens the row already carries (see the module docstring).
BLOCKING_PARTS: dict[str, tuple[str, ...]] = {
    "bk_fam_yob": ("tk_family_phon", "tk_dob_year"),
    "bk_given_dob": ("tk_given_canon", "tk_dob"),
    "bk_pc_given": ("tk_postcode", "tk_given_phon"),
    "bk_fam_dob_md": ("tk_family_phon", "tk_dob_month", "tk_dob_day"),
}
# Columns whose values are (nearly) unique per person: a cache would only cost memory.
_UNCACHED_GROUPS = frozenset({"nhs_number", "nino"})


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hmac_int64(key: bytes, value: str) -> int:
    digest = hmac.digest(key, value.encode("utf-8"), "sha256")
    return int.from_bytes(digest[:TOKEN_BYTES], "big", signed=True)


class KeyedHash:
    """HMAC-SHA256 under one key with the key schedule done once: `h(value)` == hmac_int64(key, value).

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). Copying the two pre-keyed SHA-256
    states costs ~1 µs a value against ~3-6 µs for a one-shot `hmac.digest` (which sets
    up the OpenSSL HMAC context on every call).
    """

    def __init__(self, key: bytes):
        if len(key) > 64:  # RFC 2104: longer keys are hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __call__(self, value: str) -> int:
        return int.from_bytes(self.digest(value.encode("utf-8"))[:TOKEN_BYTES], "big", signed=True)

    def many(self, values: Sequence[str]) -> np.ndarray:
        """Tokens of many values as int64 (the loop inlined: this is the per-row hot path)."""
        inner, outer = self._inner, self._outer
        out = bytearray()
        for v in values:
            i = inner.copy()
            i.update(v.encode("utf-8"))
            o = outer.copy()
            o.update(i.digest())
            out += o.digest()[:TOKEN_BYTES]
        return np.frombuffer(bytes(out), dtype=">i8").astype(np.int64)


@dataclass(frozen=True)
class EncodingSettings:
    """Encoding parameters; recorded in every manifest so the linkage side knows them."""

    clk_bits: int = 1024
    clk_k: int = 20
    clk_k_fields: dict[str, int] = field(default_factory=lambda: {"address": 10})
    hardening: str = "none"  # "none" | "blip"
    blip_f: float = 0.02

    def __post_init__(self) -> None:
        if self.clk_bits <= 0 or self.clk_bits % 64:
            raise ValueError("clk_bits must be a positive multiple of 64")
        ks = [self.clk_k, *self.clk_k_fields.values()]
        if any(not isinstance(k, int) or not 1 <= k <= 64 for k in ks):
            raise ValueError("clk_k values must be integers in 1..64")
        unknown = set(self.clk_k_fields) - {"name", "given", "family", "address"}
        if unknown:
            raise ValueError(f"clk_k_fields: unknown field(s) {sorted(unknown)}")
        if self.hardening not in ("none", "blip"):
            raise ValueError("hardening must be 'none' or 'blip'")
        if not 0.0 < self.blip_f < 0.5:
            raise ValueError("blip_f must be in (0, 0.5)")

    def k_for(self, clk_field: str) -> int:
        return self.clk_k_fields.get(clk_field, self.clk_k)

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "clk_bits": self.clk_bits,
            "clk_k": self.clk_k,
            "clk_k_fields": dict(self.clk_k_fields),
            "hardening": self.hardening,
            "token_bytes": TOKEN_BYTES,
        }
        if self.hardening == "blip":
            out["blip_f"] = self.blip_f
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> EncodingSettings:
        if not doc:
            return cls()
        allowed = {"clk_bits", "clk_k", "clk_k_fields", "hardening", "blip_f"}
        unknown = set(doc) - allowed - {"token_bytes"}
        if unknown:
            raise ValueError(f"encoding settings: unknown key(s) {sorted(unknown)}")
        return cls(**{k: v for k, v in doc.items() if k in allowed})


class _ClkField:
    """One CLK field: cached bit vectors per distinct bigram and per distinct value.

    A value's filter is the OR of its bigrams' bit vectors, computed once per distinct
    value; a batch is then a numpy gather (and an OR for multi-part fields).
    """

    _VALUE_LIMIT = 400_000  # distinct values kept before the value table is reset

    def __init__(self, key: bytes, bits: int, k: int):
        self.key, self.bits, self.k = key, bits, k
        self._hmac = KeyedHash(key)
        self.words = bits // 64
        self.bigram_ids: dict[str, int] = {}
        self.table = np.zeros((256, self.words), dtype=np.uint64)
        self._reset_values()

    def _reset_values(self) -> None:
        self.value_ids: dict[str, int] = {}
        self.values = np.zeros((1024, self.words), dtype=np.uint64)

    def _add_bigrams(self, bigrams: list[str]) -> None:
        """Bit vectors of new bigrams. Independent positions: counter-mode HMAC blocks
        HMAC(key, counter || bigram), 4 bytes (big-endian) per position, modulo the size;
        bit p is set most significant first. Computed for all the bigrams at once."""
        start, n = len(self.bigram_ids), len(bigrams)
        while start + n > len(self.table):
            self.table = np.vstack([self.table, np.zeros_like(self.table)])
        blocks = -(-self.k * 4 // 32)  # SHA-256 blocks of 8 positions each
        digest = self._hmac.digest
        stream = b"".join(digest(bytes([c]) + b.encode("utf-8")) for b in bigrams for c in range(blocks))
        pos = np.frombuffer(stream, dtype=">u4").reshape(n, blocks * 8)[:, : self.k].astype(np.int64)
        bits = np.zeros((n, self.bits), dtype=np.uint8)
        bits[np.arange(n)[:, None], pos % self.bits] = 1
        self.table[start : start + n] = np.packbits(bits, axis=1).view(np.uint64)
        self.bigram_ids.update(zip(bigrams, range(start, start + n), strict=True))

    def _add_values(self, values: list[str]) -> None:
        """Add many values at once: their bigram rows gathered and OR-reduced in one go."""
        start = len(self.value_ids)
        while start + len(values) > len(self.values):
            self.values = np.vstack([self.values, np.zeros_like(self.values)])
        padded = [f"_{v}_" for v in values]
        bigrams = [p[j : j + 2] for p in padded for j in range(len(p) - 1)]
        ids = list(map(self.bigram_ids.get, bigrams))
        if None in ids:
            self._add_bigrams(list({b for b, i in zip(bigrams, ids, strict=True) if i is None}))
            ids = list(map(self.bigram_ids.get, bigrams))
        # Every padded value has at least one bigram, so each segment is non-empty.
        lengths = np.fromiter((len(p) - 1 for p in padded), dtype=np.int64, count=len(padded))
        starts = np.zeros(len(padded), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        self.values[start : start + len(values)] = np.bitwise_or.reduceat(
            self.table[np.array(ids, dtype=np.int64)], starts, axis=0
        )
        self.value_ids.update(zip(values, range(start, start + len(values)), strict=True))

    def value_index(self, values: Sequence[str | None]) -> np.ndarray:
        """Row of each value in the value table (-1 for None). Adds unseen values first."""
        # Lookups mapped in C (get(v, -1)); None is never a key, so it comes back as -1 too.
        get = self.value_ids.get
        rows = list(map(get, values, repeat(-1)))
        if -1 in rows:
            missing = {v for v, r in zip(values, rows, strict=True) if r == -1 and v is not None}
            if missing:
                if len(self.value_ids) + len(missing) > self._VALUE_LIMIT:
                    self._reset_values()
                    missing = {v for v in values if v is not None}
                self._add_values(list(missing))
                rows = list(map(self.value_ids.get, values, repeat(-1)))
        return np.array(rows, dtype=np.int64) if rows else np.zeros(0, dtype=np.int64)

    def gather(self, *indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OR of the value vectors at each index array; (filters as (n, bits/8) uint8, present)."""
        n = len(indexes[0])
        out = np.zeros((n, self.words), dtype=np.uint64)
        present = np.zeros(n, dtype=bool)
        for idx in indexes:
            ok = idx >= 0
            out[ok] |= self.values[idx[ok]]
            present |= ok
        return out.view(np.uint8).reshape(n, self.bits // 8), present

    def encode_words(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Filters of multi-word texts as the OR of per-word filters (each word padded)."""
        word_lists = [t.split() if t else [] for t in texts]
        flat_words = [w for ws in word_lists for w in ws]
        n = len(texts)
        out = np.zeros((n, self.words), dtype=np.uint64)
        lengths = np.fromiter((len(ws) for ws in word_lists), dtype=np.int64, count=n)
        present = lengths > 0
        if flat_words:
            flat = self.value_index(flat_words)
            starts = np.zeros(int(present.sum()), dtype=np.int64)
            np.cumsum(lengths[present][:-1], out=starts[1:])
            out[present] = np.bitwise_or.reduceat(self.values[flat], starts, axis=0)
        return out.view(np.uint8).reshape(n, self.bits // 8), present


def blip(filters: np.ndarray, present: np.ndarray, f: float, rng: np.random.Generator) -> None:
    """Flip each bit of each present filter with probability about f, in place.

    Flip counts per filter are Binomial(bits, f) and positions uniform; a position drawn
    twice flips back, so the effective rate is a hair under f (about f - f^2/2).
    """
    rows = np.flatnonzero(present)
    if rows.size == 0:
        return
    bits = filters.shape[1] * 8
    counts = rng.binomial(bits, f, size=rows.size)
    row_of = np.repeat(rows, counts)
    pos = rng.integers(0, bits, size=row_of.size)
    masks = (1 << (7 - (pos & 7))).astype(np.uint8)
    np.bitwise_xor.at(filters, (row_of, pos >> 3), masks)


def _binary_column(filters: np.ndarray, present: np.ndarray) -> pa.Array:
    n, width = filters.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity = None
    if not present.all():
        validity = pa.array(present).buffers()[1]
    data = np.ascontiguousarray(filters).tobytes()
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)],
        null_count=int(n - present.sum()),
    )


class IdentityEncoder:
    """Encodes standardised identities into linkage rows (tokens, CLKs, blocking keys)."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: EncodingSettings | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.keyring = keyring
        self.settings = settings or EncodingSettings()
        self._token_keys = {group: keyring.token_key(group) for _, group in TOKEN_COLUMNS}
        self.hashers = {group: KeyedHash(key) for group, key in self._token_keys.items()}
        self._token_cache: dict[str, dict[str, int]] = {g: {} for g in self._token_keys}
        blocking_key = keyring.blocking_key()
        self._blocking_seeds = {
            c: np.uint64(hmac_int64(blocking_key, f"blocking-rule|{c}") & (2**64 - 1))
            for c in BLOCKING_COLUMNS
        }
        bits = self.settings.clk_bits
        self._clk = {
            f: _ClkField(keyring.clk_key(f), bits, self.settings.k_for(f))
            for f in ("name", "given", "family", "address")
        }
        # BLIP must not be reproducible by anyone: seed from the OS unless a test injects one.
        self._rng = rng or np.random.default_rng(secrets.randbits(128))

    # -------------------------------------------------------------- tokens

    def _tokens(self, group: str, values: list[str | None]) -> list[int | None]:
        cache, hasher = self._token_cache[group], self.hashers[group]
        if group in _UNCACHED_GROUPS:
            return [None if v is None else hasher(v) for v in values]
        out: list[int | None] = []
        append = out.append
        for v in values:
            if v is None:
                append(None)
                continue
            t = cache.get(v)
            if t is None:
                t = hasher(v)
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                cache[v] = t
            append(t)
        return out

    def _blocking(self, column: str, tokens: dict[str, pa.Array]) -> pa.Array:
        """A keyed blocking key: the rule's secret seed mixed with the row's part tokens."""
        seed = self._blocking_seeds[column]
        x = np.full(len(tokens["tk_dob"]), seed, dtype=np.uint64)
        valid = np.ones(len(x), dtype=bool)
        for part in BLOCKING_PARTS[column]:
            arr = tokens[part]
            valid &= arr.is_valid().to_numpy(zero_copy_only=False)
            x = _mix64(x ^ arr.fill_null(0).to_numpy().view(np.uint64))
        return pa.array(x.view(np.int64), pa.int64(), mask=~valid)

    # -------------------------------------------------------------- CLKs

    def _clks(self, idents: Sequence[StandardIdentity]) -> dict[str, pa.Array]:
        givens = [i.given for i in idents]
        families = [i.family for i in idents]
        name_f = self._clk["name"]
        results = {
            # clk_name: the union of given- and family-name bigrams (survives a swap).
            "clk_name": name_f.gather(name_f.value_index(givens), name_f.value_index(families)),
            "clk_given": self._clk["given"].gather(self._clk["given"].value_index(givens)),
            "clk_family": self._clk["family"].gather(self._clk["family"].value_index(families)),
            "clk_address": self._clk["address"].encode_words([i.address for i in idents]),
        }
        out = {}
        for column, (filters, present) in results.items():
            if self.settings.hardening == "blip":
                blip(filters, present, self.settings.blip_f, self._rng)
            out[column] = _binary_column(filters, present)
        return out

    # -------------------------------------------------------------- public

    def encode_batch(self, idents: Sequence[StandardIdentity]) -> dict[str, pa.Array]:
        """Linkage columns (all but `ref`) for a batch of standardised identities."""
        columns: dict[str, pa.Array] = {}
        for column, group in TOKEN_COLUMNS:
            getter = _TOKEN_VALUE[column]
            columns[column] = pa.array(self._tokens(group, [getter(i) for i in idents]), pa.int64())
        columns.update(self._clks(idents))
        for column in BLOCKING_COLUMNS:
            columns[column] = self._blocking(column, columns)
        return columns

    def encode_standardised(self, ident: StandardIdentity) -> dict[str, Any]:
        """One linkage row: the batch path's values, without building a column per field
        (person resolution encodes one identity per request)."""
        row: dict[str, Any] = {}
        for column, group in TOKEN_COLUMNS:
            row[column] = self._tokens(group, [_TOKEN_VALUE[column](ident)])[0]
        for column, arr in self._clks([ident]).items():
            row[column] = arr[0].as_py()
        for column in BLOCKING_COLUMNS:
            row[column] = self._blocking_one(column, row)
        return row

    def _blocking_one(self, column: str, row: dict[str, Any]) -> int | None:
        """`_blocking` for a single row: null when any part token is null."""
        x = np.array([self._blocking_seeds[column]], dtype=np.uint64)
        for part in BLOCKING_PARTS[column]:
            token = row[part]
            if token is None:
                return None
            x = _mix64(x ^ np.array([token], dtype=np.int64).view(np.uint64))
        return int(x.view(np.int64)[0])

    def encode_identity(self, raw: dict[str, str | None], mapping: Mapping | None = None) -> dict[str, Any]:
        """One linkage row without `ref`, from a raw identity (fields that fail are left null)."""
        ident, _problems = standardise_identity(raw, mapping)
        return self.encode_standardised(ident)


def person_key(keyring: KeyRing, raw_identity: dict[str, str | None]) -> str:
    """The pseudonymous person key: HMAC over canonical given name, family name and DOB.

    Raises StandardisationError when one of the three is missing or invalid.
    """
    ident, problems = standardise_identity(raw_identity)
    return person_key_of(keyring, ident, problems)


def person_key_of(keyring: KeyRing, ident: StandardIdentity, problems: list | None = None) -> str:
    from connectors.standardise import Problem

    missing = [
        Problem(name, "missing or invalid (needed for a person key)", True)
        for name, value in (
            ("given_name", ident.given_canon),
            ("family_name", ident.family),
            ("date_of_birth", ident.dob),
        )
        if not value
    ]
    if missing:
        raise StandardisationError(missing + [p for p in (problems or []) if not p.fatal])
    message = f"person|{ident.given_canon}|{ident.family}|{_iso(ident.dob)}"
    return hmac.new(keyring.person_key(), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _iso(d: date | None) -> str:
    return d.isoformat() if d else ""


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two equal-length filters (as the linkage SQL computes it)."""
    x = np.frombuffer(a, dtype=np.uint8)
    y = np.frombuffer(b, dtype=np.uint8)
    both = int(np.unpackbits(x & y).sum())
    total = int(np.unpackbits(x).sum()) + int(np.unpackbits(y).sum())
    return 2.0 * both / total if total else 0.0
