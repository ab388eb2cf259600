"""Re-identification with a plaintext copy of 1% of the population and public frequency lists.

The attacker holds the linkage rows of the known people together with their plaintext
(say, its own cases). From them it builds:
- a token dictionary: every deterministic column's values seen on known rows, with the
  plaintext attributes they encode; any other row carrying one of those values inherits
  the attributes (a common name, a birth year, a postcode + name combination...);
- learnt Bloom-filter bigram positions (`attacks.bloom.learn_positions`), seeded with the
  known names and bootstrapped over the public name list, to decode every other filter.
Each row's guesses are joined and looked up in the register. Rows of the known people
themselves are not counted (the attacker already knows them), so the rate is over the
other 99%.
"""

from __future__ import annotations

from collections import defaultdict

from attacks.bloom import bootstrap_decode, evaluation_rows
from attacks.columns import deterministic_columns
from attacks.result import AttackResult
from attacks.world import Extract, Register, reidentified


class Guesses:
    """Per-row attribute guesses; an attribute guessed two different ways is dropped."""

    def __init__(self, n: int):
        self.values: list[dict[str, str]] = [{} for _ in range(n)]
        self.conflicts: list[set[str]] = [set() for _ in range(n)]

    def add(self, i: int, attr: str, value: str | None) -> None:
        if value is None:
            return
        if self.values[i].get(attr, value) != value:
            self.conflicts[i].add(attr)
        self.values[i][attr] = value

    def of(self, i: int) -> dict[str, str]:
        return {a: v for a, v in self.values[i].items() if a not in self.conflicts[i]}


def dictionary_attack(guesses: Guesses, values: list, truth, attrs: tuple[str, ...], is_known: list[bool],
                       seen: list[tuple[list, object, list[bool]]]) -> None:
    """Rows whose value was seen on known rows (of any extract in `seen`: (values, truth,
    is_known) each) with exactly one plaintext inherit it."""
    dictionary: dict = defaultdict(set)
    for seen_values, seen_truth, seen_known in seen:
        for i, v in enumerate(seen_values):
            if v is not None and seen_known[i]:
                plain = tuple(seen_truth[a].iat[i] for a in attrs)
                if None not in plain:
                    dictionary[v].add(plain)
    for i, v in enumerate(values):
        if is_known[i] or v is None or len(dictionary.get(v, ())) != 1:
            continue
        (plain,) = dictionary[v]
        for a, p in zip(attrs, plain, strict=True):
            guesses.add(i, a, p)

def known_plaintext(extract: Extract, register: Register, known: set[str],
                    limit: int | None = None) -> AttackResult:
    """`limit`: score a seeded sample of that many rows (the dictionary and the learnt
    positions still come from every known row)."""
    truth = extract.truth
    persons = truth["person"].tolist()
    is_known = [p in known for p in persons]
    n = len(truth)
    guesses = Guesses(n)

    for column, attrs in deterministic_columns(extract.scheme).items():
        if column not in extract.linkage.column_names:
            continue
        values = extract.column(column)
        dictionary_attack(guesses, values, truth, attrs, is_known, [(values, truth, is_known)])

    decoded_right = {}
    rows = evaluation_rows(n, limit)
    for column, attr in (("clk_given", "given"), ("clk_family", "family")):
        if column not in extract.linkage.column_names:
            continue
        bits, present = extract.filters(column)
        seed = [truth[attr].iat[i] if is_known[i] else None for i in range(n)]
        decoded = bootstrap_decode(bits, present, register.frequencies(attr), seed, rows=rows)
        right = 0
        for i in rows.tolist():
            d = decoded[i]
            if not is_known[i] and d is not None:
                guesses.add(i, attr, d)
                right += d == truth[attr].iat[i]
        decoded_right[f"{attr}_decoded"] = right / max(1, sum(not is_known[i] for i in rows.tolist()))

    credit = 0.0
    attacked = 0
    for i in rows.tolist():
        if is_known[i]:
            continue
        attacked += 1
        credit += reidentified(register, guesses.of(i), persons[i])
    return AttackResult("known plaintext (1% of people) + public frequency lists", extract.name, attacked,
                        credit, {"known_people": len(known), **decoded_right})
