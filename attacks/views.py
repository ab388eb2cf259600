"""Attacks on the salted filters and on publishing each filter under two salts (issue #12).

v2 publishes each name filter under two secret, salt-dependent permutations (date of birth,
postcode) and the address filter under two (postcode, date of birth). What the attacker
holds: every linkage file of the project (the keys are per project, so the filters of one
name agree across the project's extracts), the public frequency lists, and, for the
known-plaintext attacks, the plaintext and rows of 1% of the people.

- `fingerprints`: what a salt permutation leaves unchanged. A permutation that moves
  whole bytes and permutes bits only inside a byte keeps the multiset of the bytes'
  popcounts: the histogram "how many bytes hold 0, 1, ..., 8 set bits" is the same in
  every salt group and in both views, so it names the *unsalted* filter, i.e. the value.
  A full bit permutation keeps only the popcount, which length hiding makes nearly
  constant.
- `fingerprint_known_plaintext`: a dictionary, built from the known rows, of every filter
  column's fingerprint (-> the name) and exact value (a salted filter without BLIP is a
  deterministic function of the value and its salt's fields: `clk_family_pc` equal ->
  same family name and postcode), joined with the deterministic columns' dictionary.
- `fingerprint_frequency`: no plaintext: fingerprints counted over all the project's
  extracts, aligned by rank with the public name lists.
- `cross_project_views`: the cross-project signature of `attacks.layout`, extended with
  how often each row's filter value and fingerprint repeat, or how many filters of the
  column lie within a Dice threshold of it (all survive a change of project key, as value
  counts do).
- `frame_alignment_bound`: how many distinct filters a row's two views let the attacker
  know to be shared by a date-of-birth frame and a postcode frame, against the number
  needed to align the two frames' permutations (an upper bound, from the ground truth).

Rows of the known people are not scored in the known-plaintext attack (the attacker
already knows them).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np

from attacks.columns import deterministic_columns, filter_columns
from attacks.known_plaintext import Guesses, dictionary_attack
from attacks.layout import _signatures, match_signatures
from attacks.result import AttackResult
from attacks.world import Extract, Register, reidentified

_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)

# What an exact salted-filter value gives away beyond its field: the salt's fields (the
# register lists year, sorted day/month and postcode). v1's filters are unsalted.
_SALT_ATTRIBUTES = {
    "v2": {"clk_given": ("year", "dm"), "clk_family": ("year", "dm"), "clk_address_dob": ("year", "dm"),
           "clk_address": ("postcode",), "clk_given_pc": ("postcode",), "clk_family_pc": ("postcode",)},
    "v1": {},
}
# The register has no address: an address filter tells the postcode of the known rows with it.
_FIELD_ATTRIBUTE = {"given": ("given",), "family": ("family",), "address": ("postcode",)}


def packed_filters(extract: Extract, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(filters as (n, bytes) uint8, present) of a CLK column."""
    values = extract.column(column)
    width = next((len(v) for v in values if v is not None), 128)
    present = np.array([v is not None for v in values], dtype=bool)
    raw = np.frombuffer(b"".join(v if v is not None else bytes(width) for v in values), dtype=np.uint8)
    return raw.reshape(len(values), width), present


def fingerprints(packed: np.ndarray, present: np.ndarray) -> list[bytes | None]:
    """Per filter: the histogram of its bytes' popcounts (None when absent). Unchanged by
    any permutation that keeps bytes together (byte permutation + bits inside a byte)."""
    pops = _POPCOUNT[packed]
    hist = np.stack([(pops == c).sum(axis=1) for c in range(9)], axis=1).astype(np.uint8)
    return [hist[i].tobytes() if present[i] else None for i in range(len(packed))]


def _filter_keys(extract: Extract, column: str) -> tuple[list, list]:
    """(fingerprint, exact value) of each row's filter in `column`."""
    packed, present = packed_filters(extract, column)
    return fingerprints(packed, present), [packed[i].tobytes() if present[i] else None for i in range(len(packed))]


def fingerprint_known_plaintext(extract: Extract, register: Register, known: set[str], tokens: bool = True,
                                project: list[Extract] | None = None) -> AttackResult:
    """Dictionaries of filter fingerprints and exact filter values (and, with `tokens`, of
    the deterministic columns) from the known rows of every extract of the `project` (one
    project's keys: its extracts' values agree); every other row of `extract` is looked up."""
    truth = extract.truth
    n = len(truth)
    pool = [e for e in (project or []) if e is not extract] + [extract]
    known_rows = {id(e): [p in known for p in e.truth["person"].tolist()] for e in pool}
    is_known = known_rows[id(extract)]
    guesses = Guesses(n)

    def attack(column: str, attrs: tuple[str, ...], of=lambda e, c: e.column(c)) -> None:
        seen = [(of(e, column), e.truth, known_rows[id(e)]) for e in pool if column in e.linkage.column_names]
        dictionary_attack(guesses, seen[-1][0], truth, attrs, is_known, seen)

    if tokens:
        for column, attrs in deterministic_columns(extract.scheme).items():
            if column in extract.linkage.column_names:
                attack(column, attrs)
    salt_attrs = _SALT_ATTRIBUTES.get(extract.scheme, {})
    for column, field in filter_columns(extract.scheme).items():
        if column not in extract.linkage.column_names or field is None:
            continue
        attack(column, _FIELD_ATTRIBUTE[field], lambda e, c: _filter_keys(e, c)[0])
        attack(column, _FIELD_ATTRIBUTE[field] + salt_attrs.get(column, ()), lambda e, c: _filter_keys(e, c)[1])
    name = "salted views: fingerprints + equal values (1% known)" + (" + tokens" if tokens else "")
    return _score(name, extract, register, guesses, [not k for k in is_known],
                  {"known_people": len(known), "extracts_pooled": len(pool)})


def _score(name: str, extract: Extract, register: Register, guesses: Guesses, scored: list[bool],
           details: dict) -> AttackResult:
    truth = extract.truth
    persons = truth["person"].tolist()
    credit, attacked = 0.0, 0
    right = Counter()
    for i in range(len(truth)):
        if not scored[i]:
            continue
        attacked += 1
        guess = guesses.of(i)
        credit += reidentified(register, guess, persons[i])
        for a in ("given", "family", "postcode"):
            right[a] += a in guess and guess[a] == truth[a].iat[i]
    details = {**details, **{f"{a}_recovered": right[a] / max(1, attacked) for a in ("given", "family", "postcode")}}
    return AttackResult(name, extract.name, attacked, credit, details)


def fingerprint_frequency(extract: Extract, register: Register, project: list[Extract]) -> AttackResult:
    """No plaintext: each name filter's fingerprint counted over every extract of the
    project, ranked, and the i-th most frequent given to the i-th most frequent name of the
    public list."""
    n = len(extract.truth)
    guesses = Guesses(n)
    for column, field in filter_columns(extract.scheme).items():
        if field not in ("given", "family") or column not in extract.linkage.column_names:
            continue
        counts: Counter = Counter()
        for e in project:
            if column in e.linkage.column_names:
                counts.update(f for f in fingerprints(*packed_filters(e, column)) if f is not None)
        ranked = [f for f, _c in counts.most_common()]
        names = [v for v, _c in register.frequencies(field).most_common()]
        assign = dict(zip(ranked, names, strict=False))
        for i, f in enumerate(fingerprints(*packed_filters(extract, column))):
            if f is not None and f in assign:
                guesses.add(i, field, assign[f])
    return _score("salted views: fingerprint frequency alignment (no plaintext)", extract, register, guesses,
                  [True] * n, {})


def dice_blocks(packed: np.ndarray, present: np.ndarray, block: int = 2048) -> Iterator[tuple[int, np.ndarray]]:
    """All-pairs Dice of a filter column, a block of rows at a time: (first row, Dice of
    those rows against every row). Absent filters are all zeros. Blocked float32 products:
    all pairs, as an attacker would compute them."""
    x = np.unpackbits(packed, axis=1).astype(np.float32)
    x[~present] = 0
    pops = x.sum(axis=1)
    for start in range(0, len(x), block):
        yield start, 2 * (x[start : start + block] @ x.T) / (pops[start : start + block, None] + pops[None, :] + 1e-9)


def near_duplicate_counts(packed: np.ndarray, present: np.ndarray, threshold: float) -> list[int]:
    """Per filter: how many filters of the column (itself included) have Dice >= threshold
    with it (0 when absent). Counts similar values under the same salt (typo variants,
    similar names of one household) as well as equal ones; noise on the bits would not
    hide them."""
    counts = np.zeros(len(packed), dtype=np.int64)
    for start, dice in dice_blocks(packed, present):
        counts[start : start + len(dice)] = (dice >= threshold).sum(axis=1)
    counts[~present] = 0
    return counts.tolist()


def _view_signatures(extract: Extract, how: str) -> tuple[list[tuple], np.ndarray]:
    """The layout signature plus, per filter column, a repeat count of the row's filter:
    `how` "exact" (equal filters), "fingerprint" (equal filters and equal fingerprints), or
    "near" (filters within Dice NEAR_DUPLICATE_DICE)."""
    sig, pops = _signatures(extract)
    extra = []
    for column in (c for c in extract.linkage.column_names if c.startswith("clk_")):
        packed, present = packed_filters(extract, column)
        if how == "near":
            extra.append(near_duplicate_counts(packed, present, NEAR_DUPLICATE_DICE))
            continue
        keys_of = [[packed[i].tobytes() if present[i] else None for i in range(len(packed))]]
        if how == "fingerprint":
            keys_of.append(fingerprints(packed, present))
        for keys in keys_of:
            freq = Counter(k for k in keys if k is not None)
            extra.append([freq[k] if k is not None else 0 for k in keys])
    return [s + tuple(x) for s, x in zip(sig, zip(*extra, strict=True), strict=True)], pops


# Well above chance (unrelated filters: Dice ~0.14 at 140 of 1024 bits) and below the
# Dice of different names (~0.3-0.5 for names sharing a few bigrams). Fixed, not tuned on
# the truth: 5,000 people gave 2.1% at 1.0, 5.1% at 0.7, 7.4% at 0.4 (bench/RESULTS-privacy.md).
NEAR_DUPLICATE_DICE = 0.4


def cross_project_views(a: Extract, b: Extract, near: bool = True) -> list[AttackResult]:
    """Link two projects' extracts of one source by each row's signature with the filters'
    repeat counts: of the exact filter (a salted filter is a deterministic function of the
    value and the salt's fields, so it groups rows as a match key does); of the exact
    filter and its fingerprint; and (`near`) of filters within Dice NEAR_DUPLICATE_DICE.
    Separate results: a noisy feature can only split true pairs, so the attacker keeps
    whichever links more (it can count unique matches without truth)."""
    la, lb = a.truth["local_id"].tolist(), b.truth["local_id"].tolist()
    out = []
    variants = [("exact", "exact filters"), ("fingerprint", "exact filters and fingerprints")]
    if near:
        variants.append(("near", f"near-duplicate filters (Dice >= {NEAR_DUPLICATE_DICE})"))
    for how, label in variants:
        sig_a, pop_a = _view_signatures(a, how)
        sig_b, pop_b = _view_signatures(b, how)
        right = match_signatures(la, lb, sig_a, pop_a, sig_b, pop_b)
        out.append(AttackResult(f"cross-project: signature with repeat counts of {label}", a.name, len(la), right))
    return out


# A salted frame's permutation has at most log2((128! * 256**128) ** 2) ~ 3,480 bits of
# entropy; one filter of ~140 set bits seen in two frames tells at most log2 C(1024, 140)
# ~ 585 bits about their relative permutation, so fewer than 6 distinct filters known to be
# the same in two frames cannot pin it down.
ALIGNMENT_FILTERS_NEEDED = 6


def frame_alignment_bound(extracts: list[Extract]) -> AttackResult:
    """An upper bound for aligning salt frames pairwise, measured with the ground truth.

    A row's two views of a name are the one place where the attacker knows that two
    frames (its date-of-birth frame and its postcode frame) hold the same filter. Pairwise
    alignment of the two frames needs ALIGNMENT_FILTERS_NEEDED distinct such filters in
    the pair. Counted over every extract of the project (typo variants of one person add
    distinct filters), from the truth's salt fields: the attacker's best case (it sees a
    shared salt only where two rows' values are similar, a high Dice).
    The rate is the share of rows in a pair with enough: an upper bound on what pairwise
    alignment could decode, not a re-identification. v1's filters share one frame (1.0)."""
    rows = sum(len(e.truth) for e in extracts)
    if all(e.scheme == "v1" for e in extracts):
        return AttackResult("frame alignment bound (pairwise; not a re-identification)", "all", rows, float(rows),
                            {"max_shared_filters": None})
    shared: dict[tuple, set] = defaultdict(set)
    pair_of_row = []
    for e in extracts:
        t = e.truth
        cols = {c: e.column(c) for c in ("clk_given", "clk_given_pc", "clk_family", "clk_family_pc",
                                         "clk_address_dob", "clk_address") if c in e.linkage.column_names}
        for i, (year, dm, pc) in enumerate(zip(t["year"], t["dm"], t["postcode"], strict=True)):
            if year is None or pc is None:
                pair_of_row.append(None)
                continue
            for kind, (dob_view, pc_view) in (("names", ("clk_given", "clk_given_pc")),
                                              ("names", ("clk_family", "clk_family_pc")),
                                              ("address", ("clk_address_dob", "clk_address"))):
                if dob_view in cols and cols[dob_view][i] is not None and cols[pc_view][i] is not None:
                    shared[(kind, year, dm, pc)].add((cols[dob_view][i], cols[pc_view][i]))
            pair_of_row.append((year, dm, pc))
    enough = {key[1:] for key, filters in shared.items() if len(filters) >= ALIGNMENT_FILTERS_NEEDED}
    alignable = sum(p is not None and p in enough for p in pair_of_row)
    sizes = Counter(len(f) for f in shared.values())
    return AttackResult("frame alignment bound (pairwise; not a re-identification)", "all", rows, float(alignable),
                        {"max_shared_filters": max(sizes) if sizes else 0,
                         "frame_pairs": len(shared),
                         "pairs_with_1_filter": sizes.get(1, 0) / max(1, len(shared))})
