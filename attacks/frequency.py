"""Frequency alignment on every deterministic column, and the profile it adds up to.

For a column, the attacker ranks the column's values by how many rows carry each, ranks
the public frequency list of the attributes the column encodes (`attacks.columns`), and
assigns the i-th most frequent value to the i-th most frequent plaintext. Columns of a
low-entropy field (sex, a year, a month, a common name) are read this way; columns of
near-unique combinations give nothing to align. The profile attack then joins, per row,
every assignment it can trust (a value whose count stands apart from its neighbours')
and looks the joined guess up in the register.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attacks.columns import deterministic_columns
from attacks.result import AttackResult
from attacks.world import Extract, Register, reidentified


def _plaintext_of(attrs: tuple[str, ...]):
    def of(row: Any) -> tuple | None:
        values = tuple(getattr(row, a) for a in attrs)
        return None if any(v is None for v in values) else values
    return of


_PLAINTEXT_FUNCS: dict[tuple[str, ...], Any] = {}


def _public(register: Register, attrs: tuple[str, ...]) -> Counter:
    """The public frequency list of the attributes together (empty for identifiers such as
    NHS numbers, which no public list counts: every value occurs once)."""
    if any(a not in register.modal.columns for a in attrs):
        return Counter()
    fn = _PLAINTEXT_FUNCS.setdefault(attrs, _plaintext_of(attrs))
    return register.frequencies(fn)


def align(values: list, public: Counter, min_gap: float = 0.05) -> tuple[dict, set]:
    """value -> assigned plaintext (by rank), and the values whose assignment stands out
    (count at least 3 and at least `min_gap` apart from both neighbours' counts)."""
    counts = Counter(v for v in values if v is not None)
    ranked = counts.most_common()
    plain = [p for p, _ in public.most_common(len(ranked))]
    assignment = {v: p for (v, _), p in zip(ranked, plain, strict=False)}
    confident = set()
    for i, (v, c) in enumerate(ranked[: len(plain)]):
        if c < 3:
            break
        above = ranked[i - 1][1] if i else None
        below = ranked[i + 1][1] if i + 1 < len(ranked) else 0
        if (above is None or above - c >= min_gap * c) and c - below >= min_gap * c:
            confident.add(v)
    return assignment, confident


def frequency_attacks(extract: Extract, register: Register) -> list[AttackResult]:
    """One result per deterministic column, and one for the combined profile."""
    truth = extract.truth
    n = len(truth)
    persons = truth["person"].tolist()
    results = []
    profile: list[dict[str, str]] = [{} for _ in range(n)]
    conflicts: list[set[str]] = [set() for _ in range(n)]
    for column, attrs in deterministic_columns(extract.scheme).items():
        if column not in extract.linkage.column_names:
            continue
        values = extract.column(column)
        assignment, confident = align(values, _public(register, attrs))
        true = list(zip(*(truth[a].tolist() for a in attrs), strict=True))
        recovered = credit = 0.0
        for i, v in enumerate(values):
            if v is None or v not in assignment:
                continue
            guess = dict(zip(attrs, assignment[v], strict=True))
            if assignment[v] == true[i]:
                recovered += 1
            credit += reidentified(register, guess, persons[i])
            if v in confident:
                for a, g in guess.items():
                    if profile[i].get(a, g) != g:
                        conflicts[i].add(a)
                    profile[i][a] = g
        results.append(AttackResult(f"frequency: {column}", extract.name, n, credit,
                                    {"value_recovered": recovered / n}))
    credit = 0.0
    recovered_identity = 0
    for i, guess in enumerate(profile):
        guess = {a: g for a, g in guess.items() if a not in conflicts[i]}
        credit += reidentified(register, guess, persons[i])
        if guess.get("given") == truth["given"].iat[i] and guess.get("family") == truth["family"].iat[i]:
            recovered_identity += 1
    results.append(AttackResult("frequency: all columns combined (profile)", extract.name, n, credit,
                                {"full_name_recovered": recovered_identity / n}))
    return results
