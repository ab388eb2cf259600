"""Pseudonymisation: keyed match keys and attribute-salted Bloom filters (encoding "v2").

What a linkage row carries (docs/PRIVACY.md has the threat model and the measured attacks):

- `tk_nhs`, `tk_nino`: keyed tokens of the two high-entropy identifiers, one key each.
- `mk_*` **match keys**: one keyed 64-bit value per *combination* of standardised fields
  (`MATCH_KEYS`), in the manner of the ONS/NHS match-key linkage: full name + date of birth,
  phonetic names (order-free, so a given/family swap gives the same key) + year, + year and
  sorted day/month (a day/month transposition gives the same key), + postcode, + locality,
  date of birth + postcode, ... No field is tokenised on its own: sex, day, month, year and
  single names never get a deterministic token, so frequency alignment has nothing
  low-entropy to align. The match keys are also the blocking keys.
- `clk_given`, `clk_family`, `clk_address`: Bloom filters (bigrams, k positions each from
  HMAC under a per-field key, as before), then **attribute-salted**: the bits are moved by a
  keyed permutation chosen by a secret salt (`SaltedPermutation`: two byte permutations with
  bit permutations inside bytes, drawn per salt, around a fixed bit transpose that moves
  each byte's bits into eight bytes, so no byte-level count is the same across salts). The name filters' salt is the year of birth and the
  sorted day/month; the address filter's is the postcode. Two records with the same salt
  use the same permutation, so their Dice coefficient is exactly the unsalted one; records
  with another salt use an unrelated permutation, so bit positions mean nothing across salt
  groups (a few people each): pattern mining, frequency alignment of filters and learning
  bigram positions from known plaintext have no common frame to work in. A record without
  the salting field gets no such filter (its names still count through the match keys that
  need no date). Per-field keys: given and family filters (and their match-key parts)
  cannot be compared with each other.

How a match key is computed: every standardised part is first turned into a secret 64-bit
part token (HMAC-SHA256 under the part's own key, cached per distinct value; never written
out). A match key is the XOR of two keyed chains over its parts, each chain
`x = mix(x ^ part)` from its own secret per-column seed, with `mix` the splitmix64
finaliser. One chain alone would be invertible (differences between rows would leak
differences between parts); the XOR of two independent chains is not (a sum of two
permutations), and costs a few numpy passes per batch instead of an HMAC per row.

Speed: HMACs run once per distinct value per key (`KeyedHash`, pre-keyed SHA-256 states),
match keys and the salting are numpy over the batch, and the extract uses the column-wise
path in `connectors.columnar`, which gives the same columns as `IdentityEncoder.encode_batch`.

The previous encoding ("v1": per-field tokens, unsalted filters) lives in
`connectors.legacy_v1`, only so that the privacy benchmark can measure both in one run.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa

from connectors.keys import KeyRing
from connectors.mapping import Mapping
from connectors.standardise import (
    StandardIdentity,
    StandardisationError,
    standardise_identity,
)

SCHEME = "v2"
SCHEMES = ("v2", "v1")
TOKEN_BYTES = 8
_CACHE_LIMIT = 300_000  # entries per part cache before it is cleared (bounds memory)

# High-entropy identifiers: a keyed token each (key purpose "token/<group>").
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (("tk_nhs", "nhs_number"), ("tk_nino", "nino"))

# Standardised parts and the key group of each part's secret token ("part/<group>").
PART_GROUPS: dict[str, str] = {
    "g_canon": "given_canon",  # given name, nickname folded ("bill" -> "william")
    "fam": "family",
    "g_phon": "name_phon",  # phonetic codes of both names share a key: `names` is order-free
    "f_phon": "name_phon",
    "dob": "dob",
    "year": "year",
    "month": "month",
    "day": "day",
    "dm": "daymonth",  # day and month sorted: a transposition gives the same part
    "middle": "middle",
    "pc": "postcode",
    "sector": "sector",
    "district": "district",
    "locality": "locality",
}
# Match keys: column -> parts. "names" = the two phonetic name parts in sorted order.
MATCH_KEYS: dict[str, tuple[str, ...]] = {
    "mk_name_dob": ("g_canon", "fam", "dob"),
    "mk_names_dobt": ("names", "year", "dm"),
    "mk_given_dob": ("g_phon", "dob"),
    "mk_family_dob": ("f_phon", "dob"),
    "mk_names_yob": ("names", "year"),
    "mk_names_ym": ("names", "year", "month"),
    "mk_names_md": ("names", "month", "day"),
    "mk_names_yd": ("names", "year", "day"),
    "mk_names_pc": ("names", "pc"),
    "mk_names_locality": ("names", "locality"),
    "mk_dob_pc": ("dob", "pc"),
    "mk_dob_sector": ("dob", "sector"),
}
# Optional keys (`[encoding] extra_match_keys = true`): they reach pairs whose date of birth
# differs or is missing (FEBRL: the keys above group at most 0.945 / 0.888 of the true
# pairs; with these 0.99 / 0.97), but every extra deterministic column adds to each row's
# signature of repeat counts, which is the same under any project key: with them, two
# projects' extracts of one source link row by row for 65% of rows, against 0.8% without
# (bench/RESULTS-privacy.md). Off by default; the privacy/quality frontier is measured.
EXTRA_MATCH_KEYS: dict[str, tuple[str, ...]] = {
    "mk_names": ("names",),
    "mk_given_pc": ("g_phon", "pc"),
    "mk_family_pc": ("f_phon", "pc"),
    "mk_dob_locality": ("dob", "locality"),
    "mk_given_locality": ("g_phon", "locality"),
    "mk_family_locality": ("f_phon", "locality"),
}
ALL_MATCH_KEYS = {**MATCH_KEYS, **EXTRA_MATCH_KEYS}
CLK_COLUMNS = ("clk_given", "clk_family", "clk_address", "clk_given_pc", "clk_family_pc", "clk_address_dob")
# Each published filter: (the unsalted filter it is made from, the parts of its salt, salt
# number). Names and address are published twice, salted by the date of birth and by the
# postcode, so that they compare when either agrees (and for records with no date of birth).
# Columns sharing a salt are listed together: a batch's salt table is built per salt.
SALTED_FILTERS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "clk_given": ("clk_given", ("year", "dm"), 0),
    "clk_family": ("clk_family", ("year", "dm"), 0),
    "clk_address_dob": ("clk_address", ("year", "dm"), 0),
    "clk_address": ("clk_address", ("pc",), 1),
    "clk_given_pc": ("clk_given", ("pc",), 2),
    "clk_family_pc": ("clk_family", ("pc",), 2),
}
# `[encoding] name_postcode_salt = "postcode+other-name"`: the postcode views of the names
# salted by the postcode and the *other* name's phonetic code, so that a salt group is a
# household or one person, not everyone at a postcode. Graph matching inside postcode
# groups (attacks/salt_graph.py) then re-identifies at most 0.02% instead of up to 2.9%, and
# FEBRL4 loses 0.019 of F1 (bench/RESULTS-privacy.md, session 11). Off by default.
NAME_POSTCODE_SALTS: dict[str, dict[str, tuple[str, tuple[str, ...], int]]] = {
    "postcode": {},
    "postcode+other-name": {"clk_given_pc": ("clk_given", ("pc", "f_phon"), 2),
                            "clk_family_pc": ("clk_family", ("pc", "g_phon"), 3)},
}


def salt_groups(salted: dict[str, tuple[str, tuple[str, ...], int]]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """The salted columns grouped by salt (columns sharing a salt share its permutation tables)."""
    groups: dict[tuple[str, ...], tuple[str, ...]] = {}
    for column, (_source, salt, _which) in salted.items():
        groups[salt] = groups.get(salt, ()) + (column,)
    return groups
_CLK_FIELD = {"clk_given": "given", "clk_family": "family", "clk_address": "address"}
LINKAGE_COLUMNS = ("ref",) + tuple(c for c, _ in TOKEN_COLUMNS) + tuple(MATCH_KEYS) + CLK_COLUMNS
EXTENDED_LINKAGE_COLUMNS = LINKAGE_COLUMNS + tuple(EXTRA_MATCH_KEYS)

_NAMES_CONST = np.uint64(0x6A09E667F3BCC908)
# Distinct bigrams of a typical value: the length-hiding filters set about k times this.
_TYPICAL_BIGRAMS = {"given": 7, "family": 7, "address": 20}
# Texts per vectorised bigram pass: the (text, bigram) key holds the text number in 22 bits.
_TEXTS_AT_ONCE = 1 << 20
Parts = dict[str, tuple[np.ndarray, np.ndarray]]  # part -> (uint64 values, validity) per row


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    x = np.add(x, np.uint64(0x9E3779B97F4A7C15))  # a new array: the rest works in place
    t = x >> np.uint64(30)
    x ^= t
    x *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(x, np.uint64(27), out=t)
    x ^= t
    x *= np.uint64(0x94D049BB133111EB)
    np.right_shift(x, np.uint64(31), out=t)
    x ^= t
    return x


def hmac_int64(key: bytes, value: str) -> int:
    digest = hmac.digest(key, value.encode("utf-8"), "sha256")
    return int.from_bytes(digest[:TOKEN_BYTES], "big", signed=True)


# Identifier columns whose values are (nearly) unique per person: a cache would only cost memory.
_UNCACHED_GROUPS = frozenset({"nhs_number", "nino"})


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
    """Encoding parameters; recorded in every manifest so the linkage side knows them.

    `scheme` "v2" (default) is this module's encoding; "v1" the previous one
    (`connectors.legacy_v1`, with its extract layout), kept for measured comparison only.
    """

    clk_bits: int = 1024
    clk_k: int = 20
    clk_k_fields: dict[str, int] = field(default_factory=lambda: {"address": 10})
    hardening: str = "none"  # "none" | "blip"
    blip_f: float = 0.02
    scheme: str = SCHEME
    extra_match_keys: bool = False
    # The salted filters this deployment publishes (v2). Fewer views: fewer pairs with an
    # agreeing salt can be compared, and less for a curious linkage unit to count; the
    # privacy / quality frontier of the choices is measured in bench/RESULTS-privacy.md.
    filters: tuple[str, ...] = CLK_COLUMNS
    name_postcode_salt: str = "postcode"  # or "postcode+other-name" (NAME_POSTCODE_SALTS)

    def __post_init__(self) -> None:
        if isinstance(self.filters, list):
            object.__setattr__(self, "filters", tuple(self.filters))
        if (not isinstance(self.filters, tuple) or not all(isinstance(f, str) for f in self.filters)
                or len(set(self.filters)) != len(self.filters)):
            raise ValueError(f"filters must be a list of distinct names among {list(CLK_COLUMNS)}")
        unknown_filters = set(self.filters) - set(CLK_COLUMNS)
        if unknown_filters:
            raise ValueError(f"filters: unknown filter(s) {sorted(unknown_filters)}; "
                             f"choose among {list(CLK_COLUMNS)}")
        if self.scheme != "v2" and self.filters != CLK_COLUMNS:
            raise ValueError("filters applies to scheme v2 only")
        if self.clk_bits <= 0 or self.clk_bits % 64:
            raise ValueError("clk_bits must be a positive multiple of 64")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {list(SCHEMES)}")
        if self.scheme == "v2" and self.clk_bits > 2048:
            raise ValueError("clk_bits must be at most 2048 for scheme v2 (byte-salted filters)")
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
        if not isinstance(self.extra_match_keys, bool):
            raise ValueError("extra_match_keys must be true or false")
        if self.name_postcode_salt not in NAME_POSTCODE_SALTS:
            raise ValueError(f"name_postcode_salt must be one of {list(NAME_POSTCODE_SALTS)}")
        if self.scheme != "v2" and self.name_postcode_salt != "postcode":
            raise ValueError("name_postcode_salt applies to scheme v2 only")

    @property
    def salted_filters(self) -> dict[str, tuple[str, tuple[str, ...], int]]:
        """Each published filter's source filter, salt parts and salt number."""
        return {**SALTED_FILTERS, **NAME_POSTCODE_SALTS[self.name_postcode_salt]}

    @property
    def match_keys(self) -> dict[str, tuple[str, ...]]:
        """The match keys this encoding writes (column -> parts)."""
        return ALL_MATCH_KEYS if self.extra_match_keys else MATCH_KEYS

    @property
    def linkage_columns(self) -> tuple[str, ...]:
        return EXTENDED_LINKAGE_COLUMNS if self.extra_match_keys else LINKAGE_COLUMNS

    def k_for(self, clk_field: str) -> int:
        return self.clk_k_fields.get(clk_field, self.clk_k)

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "clk_bits": self.clk_bits,
            "clk_k": self.clk_k,
            "clk_k_fields": dict(self.clk_k_fields),
            "hardening": self.hardening,
            "token_bytes": TOKEN_BYTES,
        }
        if self.hardening == "blip":
            out["blip_f"] = self.blip_f
        if self.extra_match_keys:
            out["extra_match_keys"] = True
        if self.filters != CLK_COLUMNS:
            out["filters"] = list(self.filters)
        if self.name_postcode_salt != "postcode":
            out["name_postcode_salt"] = self.name_postcode_salt
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> EncodingSettings:
        if not doc:
            return cls()
        allowed = {"clk_bits", "clk_k", "clk_k_fields", "hardening", "blip_f", "scheme", "extra_match_keys",
                   "filters", "name_postcode_salt"}
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
    _MAX_K = 64

    def __init__(self, key: bytes, bits: int, k: int, target: int | None = None):
        """`target`: length-hiding mode (v2): a value of b distinct bigrams shares `target`
        positions out over them (target // b each, the first target % b bigrams one more;
        1..64, a prefix of each bigram's positions), so every filter has `target` bits set
        less hash collisions, whatever the value's length."""
        self.key, self.bits, self.k, self.target = key, bits, k, target
        self._hmac = KeyedHash(key)
        self.words = bits // 64
        self.bigram_ids: dict[str, int] = {}
        self.table = np.zeros((256, self.words), dtype=np.uint64)
        self.positions = np.zeros((256, self._MAX_K), dtype=np.int64)
        # Length-hiding mode: row b * 64 + (k - 1) = the filter of bigram b's first k positions.
        self.prefixes = np.zeros((256 * self._MAX_K, self.words), dtype=np.uint64) if target else None
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
            self.positions = np.vstack([self.positions, np.zeros_like(self.positions)])
        k = self._MAX_K if self.target else self.k
        blocks = -(-k * 4 // 32)  # SHA-256 blocks of 8 positions each
        digest = self._hmac.digest
        stream = b"".join(digest(bytes([c]) + b.encode("utf-8")) for b in bigrams for c in range(blocks))
        pos = np.frombuffer(stream, dtype=">u4").reshape(n, blocks * 8)[:, :k].astype(np.int64)
        if self.target:
            self.positions[start : start + n] = pos % self.bits
            self._add_prefixes(start, pos % self.bits)
            pos = pos[:, : self.k]
        bits = np.zeros((n, self.bits), dtype=np.uint8)
        bits[np.arange(n)[:, None], pos % self.bits] = 1
        self.table[start : start + n] = np.packbits(bits, axis=1).view(np.uint64)
        self.bigram_ids.update(zip(bigrams, range(start, start + n), strict=True))

    def _add_prefixes(self, start: int, pos: np.ndarray) -> None:
        """Cumulative filters of each new bigram's positions (k = 1..64), as uint64 words in
        the packbits layout (byte p >> 3, most significant bit first, words little-endian)."""
        n = len(pos)
        need = (start + n) * self._MAX_K
        while need > len(self.prefixes):
            self.prefixes = np.vstack([self.prefixes, np.zeros_like(self.prefixes)])
        masks = np.zeros((n, self._MAX_K, self.words), dtype=np.uint64)
        bit = ((pos >> 3) & 7) * 8 + (7 - (pos & 7))
        np.put_along_axis(masks, (pos >> 6)[:, :, None], (np.uint64(1) << bit.astype(np.uint64))[:, :, None], axis=2)
        cumulative = np.bitwise_or.accumulate(masks, axis=1)
        self.prefixes[start * self._MAX_K : need] = cumulative.reshape(n * self._MAX_K, self.words)

    def _add_values(self, values: list[str]) -> None:
        """Add many values at once: their bigram rows gathered and OR-reduced in one go."""
        start = len(self.value_ids)
        while start + len(values) > len(self.values):
            self.values = np.vstack([self.values, np.zeros_like(self.values)])
        if self.target:
            self.values[start : start + len(values)] = self.filters_of([_grams(v) for v in values])
            self.value_ids.update(zip(values, range(start, start + len(values)), strict=True))
            return
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

    def filters_of(self, gram_sets: list[list[str]]) -> np.ndarray:
        """Length-hiding filters (as uint64 words) of values given as their distinct bigrams."""
        flat = [g for grams in gram_sets for g in grams]
        counts = np.fromiter(map(len, gram_sets), dtype=np.int64, count=len(gram_sets))
        return self._filters_from_ids(self._ids_of(flat), counts)

    def _ids_of(self, bigrams: list[str]) -> np.ndarray:
        """Table row of each bigram, adding unseen ones."""
        ids = list(map(self.bigram_ids.get, bigrams))
        if None in ids:
            self._add_bigrams(list({g for g, i in zip(bigrams, ids, strict=True) if i is None}))
            ids = list(map(self.bigram_ids.get, bigrams))
        return np.array(ids, dtype=np.int64)

    def _filters_from_ids(self, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Length-hiding filters of values given as their bigrams' table rows (each value's
        distinct bigrams in order, `counts` per value)."""
        # `target` positions shared out over the value's bigrams: each gets target // b, the
        # first target % b one more (so the count does not step with the length either).
        base = np.repeat(self.target // np.maximum(counts, 1), counts)
        extra = np.repeat(self.target % np.maximum(counts, 1), counts)
        starts_v = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts_v[1:])
        rank = np.arange(len(ids)) - np.repeat(starts_v, counts)
        k_entry = np.clip(base + (rank < extra), 1, self._MAX_K)  # positions per (value, bigram)
        rows = self.prefixes[ids * self._MAX_K + k_entry - 1]
        out = np.zeros((len(counts), self.words), dtype=np.uint64)
        has = counts > 0
        if has.any():
            out[has] = np.bitwise_or.reduceat(rows, starts_v[has], axis=0)
        return out

    def _text_gram_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(bigram table rows, count per text) of each text's distinct bigrams over its words
        (each word padded with "_"), in order of first occurrence: what `_word_grams` gives,
        computed on the code points of the whole batch at once instead of per text."""
        padded = [f"_{'_ _'.join(ws)}_" if ws else "" for ws in map(str.split, texts)]
        lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
        # One string, texts and words separated by spaces (never inside a word), as code points.
        codes = np.frombuffer(" ".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        text_of = np.repeat(np.arange(len(padded), dtype=np.uint64), lengths + 1)[: len(codes)]
        space = codes == 32
        ok = ~(space[:-1] | space[1:])  # a bigram never spans two words or two texts
        pair = (codes[:-1] << np.uint64(21)) | codes[1:]  # code points are < 2**21
        pos = np.flatnonzero(ok)
        # First occurrence of each (text, bigram): a stable unique, kept in text order.
        keyed = (text_of[pos] << np.uint64(42)) | pair[pos]
        _, first = np.unique(keyed, return_index=True)
        pos = pos[np.sort(first)]
        counts = np.bincount(text_of[pos].astype(np.int64), minlength=len(padded))
        distinct, inverse = np.unique(pair[pos], return_inverse=True)
        grams = [chr(k >> 21) + chr(k & 0x1FFFFF) for k in distinct.tolist()]
        return self._ids_of(grams)[inverse.ravel()], counts

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
        """Filters of multi-word texts as the OR of per-word filters (each word padded); in
        length-hiding mode, one filter of all the words' bigrams together."""
        if self.target:
            present = np.array([bool(t) for t in texts], dtype=bool)
            out = np.zeros((len(texts), self.words), dtype=np.uint64)
            if present.any():
                kept = [t for t in texts if t]
                for start in range(0, len(kept), _TEXTS_AT_ONCE):
                    ids, counts = self._text_gram_ids(kept[start : start + _TEXTS_AT_ONCE])
                    chunk = np.flatnonzero(present)[start : start + _TEXTS_AT_ONCE]
                    out[chunk] = self._filters_from_ids(ids, counts)
            return out.view(np.uint8).reshape(len(texts), self.bits // 8), present
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


@lru_cache(maxsize=200_000)
def _grams(value: str) -> tuple[str, ...]:
    """The distinct bigrams of a value padded with "_", in order."""
    padded = f"_{value}_"
    return tuple(dict.fromkeys(padded[j : j + 2] for j in range(len(padded) - 1)))


def _word_grams(text: str) -> list[str]:
    return list(dict.fromkeys(chain.from_iterable(map(_grams, text.split()))))


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


class SaltedPermutation:
    """Keyed bit permutations of a filter, one per salt. Dice between two filters moved by
    the same salt's permutation is unchanged; across salts the positions are unrelated.

    Each salt's permutation has three stages: a *byte stage* (a byte permutation and, for
    each output byte, one of 256 keyed 8-bit permutations), a fixed 8 x 8 bit transpose
    inside every 64-bit word (`transpose_words`), and a second, independent byte stage.
    One byte stage alone keeps bytes together, so the histogram of the bytes' popcounts
    would be the same under every salt: a fingerprint of the unsalted filter, i.e. of the
    name, in every salt group and both views (`attacks.views`, docs/PRIVACY.md). After the
    transpose each output byte holds one bit of eight source bytes chosen by the salt, so
    no byte-level count survives; the stages are numpy gathers, a few per row.

    Each salt's tables are drawn from splitmix64 of (secret salt ^ keyed constant), cached.
    """

    _SALT_LIMIT = 600_000

    def __init__(self, key: bytes, width_bytes: int):
        if width_bytes % 8:
            raise ValueError("filter width must be a whole number of 64-bit words")
        self.width = width_bytes
        seed = int.from_bytes(hmac.digest(key, b"bit-permutations", "sha256"), "big")
        rng = np.random.default_rng(seed)
        byte_bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)  # (256, 8)
        self.luts = np.stack([np.packbits(byte_bits[:, rng.permutation(8)], axis=1)[:, 0] for _ in range(256)])
        self._luts_flat = self.luts.ravel()  # LUT j, byte v at j * 256 + v
        # Per stage: constants of the byte order (odd) and of the LUT choice.
        self._consts = []
        for _stage in range(2):
            perm_consts = rng.integers(0, 2**63, size=width_bytes, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            lut_consts = rng.integers(0, 2**63, size=width_bytes, dtype=np.uint64) * np.uint64(2)
            self._consts.append((perm_consts, lut_consts))
        self._reset()

    def _reset(self) -> None:
        self.index: dict[int, int] = {}
        dtype = np.uint8 if self.width <= 256 else np.uint16
        # Per stage: the source byte of each output byte, and the LUT of each output byte.
        self.perm = [np.zeros((1024, self.width), dtype=dtype) for _ in range(2)]
        self.lut = [np.zeros((1024, self.width), dtype=np.uint8) for _ in range(2)]

    def _stage_tables(self, fresh: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray]:
        """(inverse byte permutation, LUT per output byte) of one byte stage for new salts."""
        perm_consts, lut_consts = self._consts[stage]
        perm = np.argsort(_mix64(fresh[:, None] ^ perm_consts[None, :]), axis=1)
        lut = (_mix64(fresh[:, None] ^ lut_consts[None, :]) >> np.uint64(56)).astype(np.uint8)
        # Stored by destination: byte q of the output is source byte inv[q] through
        # LUT lut[inv[q]] (a gather is cheaper than a scatter).
        inv = np.empty_like(perm)  # the inverse permutation, by a scatter (not a second sort)
        np.put_along_axis(inv, perm, np.arange(self.width)[None, :], axis=1)
        return inv, np.take_along_axis(lut, inv, axis=1)

    def rows(self, salts: np.ndarray) -> np.ndarray:
        """Table row of each salt (uint64), adding unseen salts."""
        if salts.size == 0:
            return np.zeros(0, dtype=np.int64)
        uniq, inverse = np.unique(salts, return_inverse=True)
        keys = uniq.tolist()
        found = np.fromiter(map(self.index.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        new = found < 0
        if new.any():
            if len(self.index) + int(new.sum()) > self._SALT_LIMIT:
                self._reset()
                new[:] = True
            fresh = uniq[new]
            start = len(self.index)
            while start + len(fresh) > len(self.perm[0]):
                self.perm = [np.vstack([t, np.zeros_like(t)]) for t in self.perm]
                self.lut = [np.vstack([t, np.zeros_like(t)]) for t in self.lut]
            for stage in range(2):
                inv, lut = self._stage_tables(fresh, stage)
                self.perm[stage][start : start + len(fresh)] = inv
                self.lut[stage][start : start + len(fresh)] = lut
            ids = range(start, start + len(fresh))
            self.index.update(zip((keys[j] for j in np.flatnonzero(new)), ids, strict=True))
            found[new] = np.arange(start, start + len(fresh))
        return found[inverse]

    _APPLY_ROWS = 2048  # rows per step: the index temporaries stay in cache

    def apply(self, filters: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each filter (n, width) uint8 moved by the permutation of its salt row: byte
        stage 0, `transpose_words`, byte stage 1."""
        return self.apply_many([filters], rows)[0]

    def apply_many(self, filters: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
        """`apply` of several filter columns whose rows share the salt rows `rows`: a row's
        index tables are built once per stage and serve every column (filters salted
        alike, e.g. the given, family and address filters salted by the date of birth)."""
        outs = [np.empty_like(f) for f in filters]
        if not outs:
            return outs
        n, width = outs[0].shape
        step = self._APPLY_ROWS
        offsets = (np.arange(step, dtype=np.intp) * width)[:, None]
        for start in range(0, n, step):
            stop = min(n, start + step)
            salt_rows = rows[start:stop]
            current = [np.ascontiguousarray(f[start:stop]) for f in filters]
            for stage in range(2):
                source, lut = self._stage_index(salt_rows, stage, offsets)
                current = [self._byte_stage_with(f, source, lut) for f in current]
                if stage == 0:
                    current = [transpose_words(f) for f in current]
            for out, moved in zip(outs, current, strict=True):
                out[start:stop] = moved
        return outs

    def _stage_index(self, salt_rows: np.ndarray, stage: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat source byte of each output byte, its LUT number << 8) for rows of one step."""
        source = self.perm[stage][salt_rows].astype(np.intp)
        source += offsets[: len(salt_rows)]
        lut = self.lut[stage][salt_rows].astype(np.uint16)  # LUT j's bytes start at j * 256
        lut <<= 8
        return source, lut

    def _byte_stage_with(self, filters: np.ndarray, source: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """Output byte q = LUT[lut[q]](input byte inv[q]), from `_stage_index`'s tables."""
        moved = filters.ravel()[source]
        moved = lut | moved
        return self._luts_flat[moved]

    def _byte_stage(self, filters: np.ndarray, salt_rows: np.ndarray, stage: int, offsets: np.ndarray) -> np.ndarray:
        """One byte stage of `filters` (contiguous rows) with the salts' tables of `stage`."""
        source, lut = self._stage_index(salt_rows, stage, offsets)
        return self._byte_stage_with(np.ascontiguousarray(filters), source, lut)


_TRANSPOSE_STEPS = tuple((np.uint64(shift), np.uint64(mask)) for shift, mask in
                         ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0)))


def transpose_words(filters: np.ndarray) -> np.ndarray:
    """Each 64-bit word (8 bytes) of each filter as an 8 x 8 bit matrix, transposed: bit b
    of byte c becomes bit c of byte b (bits counted most significant first). Three
    delta swaps on big-endian words (Hacker's Delight, 7-3), not unpack/pack: 13x faster."""
    n, width = filters.shape
    x = np.ascontiguousarray(filters).view(">u8").astype(np.uint64)  # byte 0 in the top bits
    for shift, mask in _TRANSPOSE_STEPS:
        t = (x ^ (x >> shift)) & mask
        x ^= t ^ (t << shift)
    return x.astype(">u8").view(np.uint8).reshape(n, width)


def _u64(tokens: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(values as uint64 with 0 for None, validity) of a list of tokens."""
    arr = pa.array(tokens, pa.int64())
    return arr.fill_null(0).to_numpy().view(np.uint64), arr.is_valid().to_numpy(zero_copy_only=False)


def _seed(key: bytes, label: str) -> np.uint64:
    return np.uint64(hmac_int64(key, label) & (2**64 - 1))


def _dm(d: date) -> str:
    lo, hi = sorted((d.day, d.month))
    return f"{lo:02d}{hi:02d}"


# How each part's standardised value is read from a StandardIdentity.
_PART_VALUE = {
    "g_canon": lambda i: i.given_canon,
    "fam": lambda i: i.family,
    "g_phon": lambda i: i.given_phon,
    "f_phon": lambda i: i.family_phon,
    "dob": lambda i: i.dob.isoformat() if i.dob else None,
    "year": lambda i: f"{i.dob.year:04d}" if i.dob else None,
    "month": lambda i: f"{i.dob.month:02d}" if i.dob else None,
    "day": lambda i: f"{i.dob.day:02d}" if i.dob else None,
    "dm": lambda i: _dm(i.dob) if i.dob else None,
    "middle": lambda i: i.middle,
    "pc": lambda i: i.postcode,
    "sector": lambda i: i.pc_sector,
    "district": lambda i: i.pc_district,
    "locality": lambda i: i.locality,
}


class IdentityEncoder:
    """Encodes standardised identities into linkage rows (tokens, match keys, salted CLKs)."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: EncodingSettings | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.keyring = keyring
        self.settings = settings or EncodingSettings()
        groups = {g: keyring.key(f"part/{g}") for g in set(PART_GROUPS.values())}
        groups.update({g: keyring.token_key(g) for _, g in TOKEN_COLUMNS})
        self.hashers = {g: KeyedHash(k) for g, k in groups.items()}
        self._part_cache: dict[str, dict[str, int]] = {g: {} for g in groups}
        mk_key = keyring.key("match-key")
        self.match_keys = self.settings.match_keys
        self._mk_seeds = {c: (_seed(mk_key, f"A|{c}"), _seed(mk_key, f"B|{c}")) for c in self.match_keys}
        salt_key = keyring.key("clk-salt")
        self._salt_seeds = [(_seed(salt_key, f"salt{i}|A"), _seed(salt_key, f"salt{i}|B")) for i in (0, 1, 2, 3)]
        self._salted_filters = self.settings.salted_filters
        self._salt_groups = salt_groups(self._salted_filters)
        bits = self.settings.clk_bits
        self.salting = SaltedPermutation(salt_key, bits // 8)
        # Length-hiding: about (k x typical bigram count) bits per filter, whatever the value.
        self._clk = {f: _ClkField(keyring.clk_key(f), bits, self.settings.k_for(f),
                                  target=self.settings.k_for(f) * _TYPICAL_BIGRAMS[f])
                     for f in _CLK_FIELD.values()}
        # BLIP must not be reproducible by anyone: seed from the OS unless a test injects one.
        self._rng = rng or np.random.default_rng(secrets.randbits(128))

    # -------------------------------------------------------------- parts

    def part_token(self, group: str, value: str) -> int:
        """The secret token of one standardised part value (cached per group)."""
        cache = self._part_cache[group]
        t = cache.get(value)
        if t is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            t = cache[value] = self.hashers[group](value)
        return t

    def _parts_of(self, idents: Sequence[StandardIdentity]) -> Parts:
        out: Parts = {}
        for part, group in PART_GROUPS.items():
            getter = _PART_VALUE[part]
            values = [getter(i) for i in idents]
            out[part] = _u64([None if v is None else self.part_token(group, v) for v in values])
        return out

    # -------------------------------------------------------------- finishing a batch

    def _chain(self, seed: np.uint64, parts: list[np.ndarray], n: int) -> np.ndarray:
        x = np.full(n, seed, dtype=np.uint64)
        for p in parts:
            x = _mix64(x ^ p)
        return x

    def salts(self, parts: Parts, names: tuple[str, ...], which: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's filter salt from the named parts (secret, keyed) and whether it has one."""
        n = len(parts[names[0]][0])
        valid = np.ones(n, dtype=bool)
        for name in names:
            valid &= parts[name][1]
        values = [parts[name][0] for name in names]
        a, b = self._salt_seeds[which]
        return self._chain(a, values, n) ^ self._chain(b, values, n), valid

    def finish(
        self,
        parts: Parts,
        identifiers: dict[str, tuple[np.ndarray, np.ndarray]],
        filters: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> dict[str, pa.Array]:
        """The linkage columns (all but `ref`) from per-row parts, identifier tokens (int64)
        and unsalted filters ((n, bytes) uint8, present), all for the same rows."""
        n = len(parts["dob"][0])
        p = dict(parts)
        (g, g_ok), (f, f_ok) = p["g_phon"], p["f_phon"]
        lo, hi = np.minimum(g, f), np.maximum(g, f)
        p["names"] = (_mix64(_mix64(lo ^ _NAMES_CONST) ^ hi), g_ok & f_ok)
        columns: dict[str, pa.Array] = {}
        for column, _group in TOKEN_COLUMNS:
            values, valid = identifiers[column]
            columns[column] = pa.array(values, pa.int64(), mask=~valid)
        for column, names in self.match_keys.items():
            valid = np.ones(n, dtype=bool)
            for name in names:
                valid &= p[name][1]
            a, b = self._mk_seeds[column]
            values = [p[name][0] for name in names]
            key = self._chain(a, values, n) ^ self._chain(b, values, n)
            columns[column] = pa.array(key.view(np.int64), pa.int64(), mask=~valid)
        # Name filters are salted by the date of birth and by the postcode, the address
        # filter by the postcode (SALTED_FILTERS). The columns that share a salt are moved
        # together (one set of index tables per step, `apply_many`).
        salted_columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        salted_filters = self._salted_filters
        for salt_parts, all_in_group in self._salt_groups.items():
            # Only the filters this deployment publishes are salted; the salt stays the
            # group's, so a published filter is the same whatever else is published.
            group = tuple(c for c in all_in_group if c in self.settings.filters)
            if not group:
                continue
            salts, salted = self.salts(p, salt_parts, salted_filters[all_in_group[0]][2])
            idx = np.flatnonzero(salted)
            presents = [filters[salted_filters[c][0]][1] & salted for c in group]
            outs = [np.zeros_like(filters[salted_filters[c][0]][0]) for c in group]
            if idx.size:
                rows = self.salting.rows(salts[idx])
                # A row without a filter is all zeros and stays all zeros (the LUTs are bit
                # permutations), so every salted row is moved and absent ones masked after.
                moved = self.salting.apply_many([filters[salted_filters[c][0]][0][idx] for c in group], rows)
                for out, m in zip(outs, moved, strict=True):
                    out[idx] = m
            for column, out, present in zip(group, outs, presents, strict=True):
                out[~present] = 0
                salted_columns[column] = (out, present)
        for column in SALTED_FILTERS:
            if column not in self.settings.filters:  # not published by this deployment
                columns[column] = pa.nulls(n, pa.binary())
                continue
            out, present = salted_columns[column]
            if self.settings.hardening == "blip":
                blip(out, present, self.settings.blip_f, self._rng)
            columns[column] = _binary_column(out, present)
        return columns

    # -------------------------------------------------------------- public

    def encode_batch(self, idents: Sequence[StandardIdentity]) -> dict[str, pa.Array]:
        """Linkage columns (all but `ref`) for a batch of standardised identities."""
        parts = self._parts_of(idents)
        identifiers = {}
        for column, group in TOKEN_COLUMNS:
            value = (lambda i: i.nhs_number) if group == "nhs_number" else (lambda i: i.nino)
            hasher = self.hashers[group]
            values, valid = _u64([None if (v := value(i)) is None else hasher(v) for i in idents])
            identifiers[column] = (values.view(np.int64), valid)
        given, family, address = self._clk["given"], self._clk["family"], self._clk["address"]
        filters = {
            "clk_given": given.gather(given.value_index([i.given for i in idents])),
            "clk_family": family.gather(family.value_index([i.family for i in idents])),
            "clk_address": address.encode_words([i.address for i in idents]),
        }
        return self.finish(parts, identifiers, filters)

    def encode_standardised(self, ident: StandardIdentity) -> dict[str, Any]:
        """One linkage row (person resolution encodes one identity per request)."""
        return {c: arr[0].as_py() for c, arr in self.encode_batch([ident]).items()}

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
