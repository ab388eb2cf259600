"""Blocking rules chosen from the data, under one budget of comparisons per record.

A settings document may carry candidate rules instead of a fixed list:

    "blocking": {"candidates": ["l.a = r.a", "l.a = r.b AND l.b = r.a", ...],
                 "max_comparisons_per_record": 3.0}

Before anything is scored, each candidate's comparisons are counted from group sizes, as
Splink's comparison counting does (SUM n(n-1)/2 over the rule's key for a rule on equal
columns; for a rule pairing different columns, SUM over keys of left count x right
count, halved, since the run keeps one orientation of each pair). Candidates are then
admitted cheapest first while the running total stays within the budget
(`max_comparisons_per_record` x records). So a single-field rule joins when its blocks
are small (FEBRL: date of birth alone, a few pairs per record) and drops out when it
would explode (date of birth alone at 20M records), and the total stays linear in the
population. A candidate naming a column the records do not carry is skipped (the
encoding decides which columns exist), and so is one whose count is zero.

The chosen rules go into the run's settings (`splink.blocking_rules_to_generate_predictions`),
so person resolution and a re-read of the run use exactly them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from linkage.clk import band_columns
from linkage.settings import equality_terms

# Below this share of the budget left after the match keys, filter bands are not counted:
# counting them costs a join each (32 candidates), and a tenth of the budget is the least
# worth that. On the synthetic sources the keys leave 17% at 100,000 records, 7.8% at 1M and
# 5.4% at 2M (bench/RESULTS-linkage.md), so national-size runs spend nothing on bands.
BUDGET_FULL = 0.10
# The same test again before the 64-bit bands (halves of the 128-bit ones, linkage.clk): 64
# more candidates, a join each, which at 94,000 synthetic records cost 3.7 s for almost no
# pair (the keys and 128-bit bands had left 0.2% of the budget).


class BlockingError(Exception):
    """No candidate rule is usable on these records."""


@dataclass(frozen=True)
class RuleCount:
    rule: str
    comparisons: float  # counted before running (the upper bound of its marginal pairs)
    chosen: bool
    reason: str  # why it was chosen or left out

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "comparisons": int(self.comparisons), "chosen": self.chosen,
                "reason": self.reason}


def count_comparisons(con: duckdb.DuckDBPyConnection, table: str, rule: str) -> float:
    """Pairs (one orientation, no self-pairs) that an equality-conjunction rule blocks,
    from group sizes only (no join). Exact for rules on equal columns."""
    terms = equality_terms(rule)
    if not terms:
        raise BlockingError(f"blocking rule {rule!r}: only conjunctions of l.a = r.b can be counted")
    left = [a for a, _ in terms]
    right = [b for _, b in terms]
    if left == right:
        keys = ", ".join(left)
        not_null = " AND ".join(f"{c} IS NOT NULL" for c in left)
        sql = (f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*)::DOUBLE AS n "
               f"FROM {table} WHERE {not_null} GROUP BY {keys})")
        return float(con.execute(sql).fetchall()[0][0])
    lk = ", ".join(f"{a} AS k{i}" for i, a in enumerate(left))
    rk = ", ".join(f"{b} AS k{i}" for i, b in enumerate(right))
    lnn = " AND ".join(f"{a} IS NOT NULL" for a in left)
    rnn = " AND ".join(f"{b} IS NOT NULL" for b in right)
    ks = ", ".join(f"k{i}" for i in range(len(terms)))
    on = " AND ".join(f"l.k{i} = r.k{i}" for i in range(len(terms)))
    # records whose own left key equals their own right key would pair with themselves
    self_pairs = " AND ".join(f"{a} = {b}" for a, b in terms)
    sql = f"""
        WITH l AS (SELECT {lk}, count(*)::DOUBLE AS n FROM {table} WHERE {lnn} GROUP BY {ks}),
             r AS (SELECT {rk}, count(*)::DOUBLE AS n FROM {table} WHERE {rnn} GROUP BY {ks})
        SELECT coalesce((SELECT sum(l.n * r.n) FROM l JOIN r ON {on}), 0)
             - (SELECT count(*) FROM {table} WHERE {self_pairs})"""
    return float(con.execute(sql).fetchall()[0][0]) / 2.0


def group_size_stats(con: duckdb.DuckDBPyConnection, table: str, rule: str) -> dict[str, float]:
    """A rule on equal columns, described by its groups (records sharing the key): how
    many groups of two or more, the records in them, the largest, and the comparisons
    (SUM n(n-1)/2, as `count_comparisons`). The sizing plan (docs/SCALE.md) reads these."""
    terms = equality_terms(rule)
    if not terms or [a for a, _ in terms] != [b for _, b in terms]:
        raise BlockingError(f"blocking rule {rule!r}: group sizes need a rule on equal columns")
    keys = ", ".join(a for a, _ in terms)
    not_null = " AND ".join(f"{a} IS NOT NULL" for a, _ in terms)
    row = con.execute(
        f"""SELECT count(*) FILTER (WHERE n > 1), coalesce(sum(n) FILTER (WHERE n > 1), 0),
                   coalesce(max(n), 0), coalesce(sum(n * (n - 1) / 2), 0)
            FROM (SELECT count(*)::DOUBLE AS n FROM {table} WHERE {not_null} GROUP BY {keys})"""
    ).fetchall()[0]
    return {"groups": int(row[0]), "records_in_groups": int(row[1]), "largest_group": int(row[2]),
            "comparisons": float(row[3])}


def estimate_comparisons(con: duckdb.DuckDBPyConnection, table: str, rule: str,
                         population: float) -> float:
    """The comparisons `rule` would block on a population of `population` records, of
    which `table` is a uniform random sample: a pair is in the sample with probability
    p^2 (p = sample / population), so the population's count is the sample's / p^2.
    (Valid for a random sample only: a sample of one area is denser than the nation.)"""
    n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    if n < 2:
        raise BlockingError("a sample of fewer than two records estimates nothing")
    return count_comparisons(con, table, rule) * (float(population) / n) ** 2


def _columns_of(rule: str) -> set[str]:
    return {c for term in (equality_terms(rule) or []) for c in term}


def _pair_condition(rule: str) -> str:
    return " AND ".join(f"l.{a} = r.{b}" for a, b in equality_terms(rule) or [])


def count_new_pairs(con: duckdb.DuckDBPyConnection, table: str, rule: str, chosen: list[str],
                    into: str | None = None) -> int:
    """Pairs `rule` blocks that none of `chosen` does (as Splink's predict: each pair once,
    l.unique_id < r.unique_id, the first rule that blocks it claims it). With `into`, the
    pairs (join_key_l, join_key_r) are also kept in a new table of that name."""
    others = " OR ".join(f"({_pair_condition(r)})" for r in chosen)
    where = f" WHERE NOT coalesce({others}, false)" if others else ""
    pairs = (f"FROM {table} l JOIN {table} r ON {_pair_condition(rule)} "
             f"AND l.unique_id < r.unique_id{where}")
    if into is None:
        return int(con.execute(f"SELECT count(*) {pairs}").fetchall()[0][0])
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS "
                f"SELECT l.unique_id AS join_key_l, r.unique_id AS join_key_r {pairs}")
    return int(con.execute(f"SELECT count(*) FROM {into}").fetchall()[0][0])


def blocked_pairs_table(con: duckdb.DuckDBPyConnection, table: str, pairs: str, rules: list[str],
                        out: str) -> None:
    """Splink's blocked pairs for `rules` (match_key: the index of the first rule, in this
    order, that blocks the pair; join_key_l < join_key_r) as table `out`, from `pairs`
    (join_key_l, join_key_r): the pairs those rules block, counted already."""
    first = " ".join(f"WHEN coalesce({_pair_condition(r)}, false) THEN '{i}'" for i, r in enumerate(rules))
    con.execute(
        f"""CREATE OR REPLACE TABLE {out} AS
            SELECT CASE {first} END AS match_key, p.join_key_l, p.join_key_r
            FROM {pairs} p JOIN {table} l ON l.unique_id = p.join_key_l
            JOIN {table} r ON r.unique_id = p.join_key_r""")


def choose_rules(
    con: duckdb.DuckDBPyConnection,
    table: str,
    candidates: list[str],
    max_per_record: float,
    max_count_per_rule: float = 2.0,
    add_band_columns: Callable[[list[str]], object] | None = None,
    pairs_out: str | None = None,
) -> tuple[list[str], list[RuleCount], int, int]:
    """The candidates admitted under the budget (in their settings order, so the match
    keys of a run are stable), every candidate's count and reason, the record count and
    the pairs the chosen rules block together.

    With `pairs_out`, the pairs counted for the chosen rules are kept as Splink's blocked
    pairs table of that name (`blocked_pairs_table`), so predict need not block again.

    Each candidate is counted from group sizes first; one whose count alone is over
    `max_count_per_rule` times the budget is left out without running it. The others are
    taken cheapest first, and each one's new pairs (those no chosen rule blocks) are
    counted by a join of its own blocks, so the total is the exact number of pairs the
    run will score. A rule is admitted while that total stays within the budget, and if
    it adds a pair. A more general rule admitted later drops the chosen rules that contain
    its terms (they add no pair to it), so the run does not build their joins for nothing.

    Filter bands (linkage.clk) come after every other candidate: they take only what the
    keys leave of the budget, and a run's keys are the same with or without them. When the
    keys leave less than `BUDGET_FULL` of the budget, the bands are not counted at all;
    otherwise `add_band_columns(band_rules)` (when given) first derives their columns.
    """
    n = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    budget = max_per_record * n
    keys = [(i, r) for i, r in enumerate(candidates) if not band_columns([r])]
    bands = [(i, r) for i, r in enumerate(candidates) if band_columns([r]) and not _is_half_band(r)]
    halves = [(i, r) for i, r in enumerate(candidates) if band_columns([r]) and _is_half_band(r)]
    reasons: dict[int, str] = {}
    counts: dict[int, float] = {}
    chosen: dict[int, frozenset] = {}
    total = 0

    def admit(group: list[tuple[int, str]]) -> None:
        nonlocal total
        present = {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}
        counted: list[tuple[int, str, float | None]] = []
        for i, rule in group:
            missing = _columns_of(rule) - present
            if missing:
                reasons[i] = f"column(s) not in the records: {', '.join(sorted(missing))}"
                counted.append((i, rule, None))
                continue
            counts[i] = count_comparisons(con, table, rule)
            counted.append((i, rule, counts[i]))
        for i, rule, c in sorted(counted, key=lambda x: (x[2] is None, x[2] or 0.0, x[0])):
            terms = frozenset(equality_terms(rule) or [])
            if c is None:
                continue
            if c == 0:
                reasons[i] = "blocks no pair"
                continue
            if any(t <= terms for t in chosen.values()):
                reasons[i] = "every pair it blocks is blocked by a chosen, more general rule"
                continue
            if c > max_count_per_rule * budget:
                reasons[i] = (f"{c / max(n, 1):.2f} comparisons per record on its own, over "
                              f"{max_count_per_rule:g} x the budget ({max_per_record} per record)")
                continue
            added = count_new_pairs(con, table, rule, [candidates[j] for j in chosen],
                                    None if pairs_out is None else _CANDIDATE_PAIRS)
            if added == 0:
                reasons[i] = "adds no pair the chosen rules do not block"
                continue
            if total + added > budget:
                reasons[i] = (f"{added / max(n, 1):.2f} new comparisons per record would take the "
                              f"total over the budget ({max_per_record} per record)")
                continue
            if pairs_out is not None:
                con.execute(f"INSERT INTO {_CHOSEN_PAIRS} SELECT * FROM {_CANDIDATE_PAIRS}")
            for j in [j for j, t in chosen.items() if terms <= t]:
                del chosen[j]
                reasons[j] = f"dropped: the more general {rule!r} blocks every pair it did"
            chosen[i] = terms
            total += added
            reasons[i] = f"adds {added} pairs (total {total / max(n, 1):.2f} per record)"

    if pairs_out is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_CHOSEN_PAIRS} (join_key_l BIGINT, join_key_r BIGINT)")
    admit(keys)
    for group, before in ((bands, "the match keys"), (halves, "the match keys and 128-bit bands")):
        if not group:
            continue
        if budget - total < BUDGET_FULL * budget:
            for i, _rule in group:
                reasons[i] = (f"not counted: {before} take {total / max(n, 1):.2f} of the budget "
                              f"({max_per_record} per record)")
            continue
        if add_band_columns is not None:
            add_band_columns([r for _i, r in group])
        admit(group)
    if not chosen:
        raise BlockingError(
            "no candidate blocking rule fits the budget of "
            f"{max_per_record} comparisons per record on {n} records: "
            + "; ".join(f"{r}: {reasons.get(i, '')}" for i, r in enumerate(candidates)))
    report = [RuleCount(r, counts.get(i, 0.0), i in chosen, reasons.get(i, "")) for i, r in enumerate(candidates)]
    rules = [r for i, r in enumerate(candidates) if i in chosen]
    if pairs_out is not None:
        # A rule dropped for a more general one leaves its pairs: the general one blocks them.
        blocked_pairs_table(con, table, _CHOSEN_PAIRS, rules, pairs_out)
        con.execute(f"DROP TABLE IF EXISTS {_CHOSEN_PAIRS}")
        con.execute(f"DROP TABLE IF EXISTS {_CANDIDATE_PAIRS}")
    return rules, report, n, total


def _is_half_band(rule: str) -> bool:
    return any(column.startswith("band64_") for column in band_columns([rule]))


_CHOSEN_PAIRS = "__jup_chosen_pairs"
_CANDIDATE_PAIRS = "__jup_candidate_pairs"


def settings_with_chosen_rules(
    con: duckdb.DuckDBPyConnection, table: str, settings: dict[str, Any],
    add_band_columns: Callable[[list[str]], object] | None = None,
    pairs_out: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The settings with `splink.blocking_rules_to_generate_predictions` chosen from
    `blocking.candidates` on these records (unchanged when the settings give fixed rules),
    and what was counted (for the summary and report). With `pairs_out`, the chosen rules'
    pairs as Splink's blocked pairs table of that name (`choose_rules`), when chosen here."""
    import copy

    blocking = settings.get("blocking")
    if not blocking:
        return settings, None
    chosen, report, n, pairs = choose_rules(
        con, table, blocking["candidates"], float(blocking["max_comparisons_per_record"]),
        float(blocking.get("max_count_per_rule", 2.0)), add_band_columns, pairs_out)
    out = copy.deepcopy(settings)
    out["splink"]["blocking_rules_to_generate_predictions"] = chosen
    return out, {"records": n, "budget_per_record": blocking["max_comparisons_per_record"],
                 "comparisons": pairs, "comparisons_per_record": round(pairs / max(n, 1), 3),
                 "chosen": chosen, "candidates": [r.to_dict() for r in report]}
