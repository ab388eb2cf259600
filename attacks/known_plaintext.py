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


def known_plaintext(extract: Extract, register: Register, known: set[str],
                    limit: int | None = None) -> AttackResult:
    """`limit`: score a seeded sample of that many rows (the dictionary and the learnt
    positions still come from every known row)."""
    truth = extract.truth
    persons = truth["person"].tolist()
    is_known = [p in known for p in persons]
    n = len(truth)
    guesses: list[dict[str, str]] = [{} for _ in range(n)]
    conflicts: list[set[str]] = [set() for _ in range(n)]

    def add(i: int, attr: str, value: str | None) -> None:
        if value is None:
            return
        if guesses[i].get(attr, value) != value:
            conflicts[i].add(attr)
        guesses[i][attr] = value

    for column, attrs in deterministic_columns(extract.scheme).items():
        if column not in extract.linkage.column_names:
            continue
        values = extract.column(column)
        dictionary: dict = defaultdict(set)
        for i, v in enumerate(values):
            if v is not None and is_known[i]:
                plain = tuple(truth[a].iat[i] for a in attrs)
                if None not in plain:
                    dictionary[v].add(plain)
        for i, v in enumerate(values):
            if is_known[i] or v is None or len(dictionary.get(v, ())) != 1:
                continue
            (plain,) = dictionary[v]
            for a, p in zip(attrs, plain, strict=True):
                add(i, a, p)

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
                add(i, attr, d)
                right += d == truth[attr].iat[i]
        decoded_right[f"{attr}_decoded"] = right / max(1, sum(not is_known[i] for i in rows.tolist()))

    credit = 0.0
    attacked = 0
    for i in rows.tolist():
        if is_known[i]:
            continue
        attacked += 1
        guess = {a: v for a, v in guesses[i].items() if a not in conflicts[i]}
        credit += reidentified(register, guess, persons[i])
    return AttackResult("known plaintext (1% of people) + public frequency lists", extract.name, attacked,
                        credit, {"known_people": len(known), **decoded_right})
