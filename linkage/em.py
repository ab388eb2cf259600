"""m by expectation maximisation: Splink's algorithm, one SQL query per training rule.

Splink's `estimate_parameters_using_expectation_maximisation(...,
estimate_without_term_frequencies=True)` builds the blocked pairs' comparison vectors,
counts each agreement pattern, then runs every EM iteration as a SQL pipeline over those
counts (~25 queries plus per-query SQL generation and parsing: most of its cost on a
FEBRL-size link). Here the patterns are counted in one query and the iterations run in
numpy over the (few thousand) pattern counts. The algorithm is Splink's, step for step:

- comparisons that use a column of the training rule are left out (their m cannot be
  estimated from pairs that all agree on it);
- the starting prior is the model's, adjusted by the Bayes factors of the exact-match
  levels the rule implies (Splink's `_blocking_adjusted_probability_two_random_records_match`);
- E step: each pattern's match probability from the prior and the levels' match weights
  (log2 of m/u, both clamped at Splink's minimum; null levels weigh 0);
- M step: m of a level = its share of the expected matching pairs among non-null
  levels; a level no pattern shows is "not observed"; u stays fixed; the prior becomes
  the expected share of matches (used in the next iteration, not saved);
- stop when no m and not the prior moved by `em_convergence`, or after `max_iterations`;
- each estimated level's m is appended to its trained values as "EM, blocked on: <rule>"
  and the model takes the median over sessions, as Splink does.
- Past `max_pairs` blocked pairs, records are sampled on both sides by a seeded hash so
  about `max_pairs` pairs remain (Splink's own sampling scheme, its probe replaced by an
  exact count for rules that are conjunctions of column equalities).

Tested against Splink's own EM on the synthetic sources (tests/linkage/test_model_parts.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from splink import Linker
from splink.internals.comparison_level import M_U_CLAMP_MIN
from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT
from splink.internals.exceptions import EMTrainingException
from splink.internals.misc import bayes_factor_to_prob, prob_to_bayes_factor
from splink.internals.parse_sql import get_columns_used_from_sql
from splink.internals.settings import Settings

from linkage.clk import DICE_FUNCTION, share_dice
from linkage.settings import equality_terms

RECORDS_TABLE = "records"
_SAMPLE_MODULUS = 1_000_000_000
_PROBE_SAMPLE = 0.01
def _equality_columns(rule_sql: str) -> list[str] | None:
    """Columns of a rule that is a conjunction of `l.c = r.c` terms, else None."""
    terms = equality_terms(rule_sql)
    if not terms or any(left != right for left, right in terms):
        return None
    return [left for left, _ in terms]


def _blocked_pair_count(con: Any, rule_sql: str) -> float:
    """Pairs the rule blocks (l.unique_id < r.unique_id): exact for equality conjunctions
    (a group count, no join), else estimated from a 1% record sample on each side."""
    cols = _equality_columns(rule_sql)
    if cols:
        keys = ", ".join(cols)
        not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        row = con.execute(
            f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM "
            f"(SELECT count(*)::DOUBLE AS n FROM {RECORDS_TABLE} WHERE {not_null} GROUP BY {keys})"
        ).fetchall()
        return float(row[0][0])
    probe = int(_PROBE_SAMPLE * 10_000)
    sample = f"(SELECT * FROM {RECORDS_TABLE} WHERE hash(unique_id) % 10000 < {probe})"
    row = con.execute(
        f"SELECT count(*) FROM {sample} l JOIN {sample} r "
        f"ON ({rule_sql}) AND l.unique_id < r.unique_id"
    ).fetchall()
    return row[0][0] / (_PROBE_SAMPLE**2)


def _as_float(p: Any) -> float:
    return 1e-6 if p == LEVEL_NOT_OBSERVED_TEXT else p  # Splink's value for "not observed"


def _level_weights(levels: dict[int, Any], m: dict[int, Any]) -> np.ndarray:
    """Match weight of each gamma value under the current m (Splink's `_match_weight`),
    indexed by gamma + 1 (the null level, gamma -1, weighs 0)."""
    out = np.zeros(max(levels) + 2)
    for gamma, level in levels.items():
        mv, u = _as_float(m[gamma]), level.u_probability
        out[gamma + 1] = math.log2(max(mv, M_U_CLAMP_MIN) / max(u, M_U_CLAMP_MIN))
    return out


def _levels_implied_by_rule(rule_sql: str, rule_cols: set[str], comparisons: list) -> list:
    """Splink's exact-match levels that a training rule implies.

    Splink decides it by parsing every level's SQL; only a level that names a column of
    the rule can be one of them, so only those are handed to Splink's own function (the
    same answer, without parsing the dozens of levels that cannot qualify).
    """
    names = re.compile(
        r"\b(" + "|".join(re.escape(c) for c in sorted(rule_cols)) + r")_[lr]\b", re.IGNORECASE
    )
    candidates = []
    for cc in comparisons:
        levels = [lv for lv in cc.comparison_levels
                  if not lv.is_null_level and names.search(lv.sql_condition)]
        if levels:
            candidates.append(_ComparisonView(cc, levels))
    return Settings._get_comparison_levels_corresponding_to_training_blocking_rule(
        blocking_rule_sql=rule_sql, sqlglot_dialect="duckdb", comparisons=candidates
    )


class _ComparisonView:
    """A comparison seen through a subset of its levels (all Splink's function reads)."""

    def __init__(self, comparison: Any, levels: list):
        self.comparison, self.comparison_levels = comparison, levels
        self.output_column_name = comparison.output_column_name


def used_columns(con: Any, sqls: list[str], clks: list[str]) -> list[str]:
    """The columns of the records that `sqls` (levels' SQL, over `c_l` / `c_r`) read, and
    the CLKs whose Dice they read (`share_dice`)."""
    text = " ".join(sqls)
    return [
        d[0] for d in con.execute(f"SELECT * FROM {RECORDS_TABLE} LIMIT 0").description
        if d[0] not in ("unique_id", "source", "ref")
        and (d[0] in clks or re.search(rf"\b{re.escape(d[0])}_[lr]\b", text))
    ]


def pair_columns(con: Any, sqls: list[str], clks: list[str]) -> str:
    """`l.c AS c_l, r.c AS c_r` for the `used_columns`: pairs carry no other column (not
    every CLK struct and key of both records)."""
    return ", ".join(f"l.{c} AS {c}_l, r.{c} AS {c}_r" for c in used_columns(con, sqls, clks))


def pattern_counts(con: Any, comparisons: list, pairs_from: str) -> tuple[np.ndarray, np.ndarray]:
    """Each agreement pattern (one gamma per comparison, -1 = null) of the pairs that
    `pairs_from` (SQL naming the two records `l` and `r`) gives, and how many pairs show
    it; in a fixed order, so sums over patterns are the same to the last bit every run."""
    cases, clks = share_dice([cc._case_statement.replace("\n", " ") for cc in comparisons])
    pair_cols = pair_columns(con, cases, clks)
    pair_cols += "".join(f", {DICE_FUNCTION}(l.{c}, r.{c}) AS __jup_dice_{c}" for c in clks)
    names = [cc._gamma_column_name for cc in comparisons]
    rows = con.execute(
        f"""SELECT {', '.join(names)}, count(*) FROM (
                SELECT {', '.join(cases)} FROM (SELECT {pair_cols} FROM {pairs_from}))
            GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    patterns = np.array([r[:-1] for r in rows], dtype=np.int64).reshape(len(rows), len(names))
    return patterns, np.array([r[-1] for r in rows], dtype=np.float64)


def vector_pattern_counts(con: Any, comparisons: list, vectors_from: str) -> tuple[np.ndarray, np.ndarray]:
    """`pattern_counts` of comparison vectors already computed (`vectors_from`: SQL of a
    table with one gamma column per comparison), in the same fixed order."""
    names = [cc._gamma_column_name for cc in comparisons]
    rows = con.execute(
        f"SELECT {', '.join(names)}, count(*) FROM {vectors_from} GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    patterns = np.array([r[:-1] for r in rows], dtype=np.int64).reshape(len(rows), len(names))
    return patterns, np.array([r[-1] for r in rows], dtype=np.float64)


def estimate_m(
    linker: Linker,
    rule_sql: str,
    max_pairs: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One EM session on the pairs `rule_sql` blocks; updates m on the linker in place.

    Returns what was estimated: {"pairs", "iterations", "comparisons", "prior"}.
    """
    settings_obj = linker._settings_obj
    training = settings_obj.training_settings
    con = linker._db_api._con
    rule_cols = set(get_columns_used_from_sql(rule_sql, sqlglot_dialect="duckdb"))
    active = [
        cc for cc in settings_obj.comparisons
        if not rule_cols & {c.input_name for c in cc._input_columns_used_by_case_statement}
    ]
    if not active:
        raise EMTrainingException(f"training rule {rule_sql!r} leaves no comparison to estimate")

    # Starting prior: the model's, adjusted for the rule (pairs that all agree on it).
    bf = prob_to_bayes_factor(settings_obj._probability_two_random_records_match)
    for info in _levels_implied_by_rule(rule_sql, rule_cols, settings_obj.comparisons):
        bf *= info["level"]._bayes_factor
    prior = bayes_factor_to_prob(bf)

    sample_filter = ""
    if max_pairs is not None:
        blocked = _blocked_pair_count(con, rule_sql)
        if blocked > max_pairs:
            threshold = max(1, round(math.sqrt(max_pairs / blocked) * _SAMPLE_MODULUS))
            sample_filter = " AND " + " AND ".join(
                f"hash({side}.unique_id + {int(seed)}) % {_SAMPLE_MODULUS} < {threshold}"
                for side in ("l", "r")
            )

    patterns, counts = pattern_counts(
        con, active,
        f"{RECORDS_TABLE} l JOIN {RECORDS_TABLE} r ON ({rule_sql}) AND l.unique_id < r.unique_id{sample_filter}")
    if not len(counts):
        raise EMTrainingException(
            f"Training rule `{rule_sql}` resulted in no record pairs: EM needs at least a few "
            "hundred blocked pairs (choose another training rule)."
        )
    total = counts.sum()

    levels = [{lv.comparison_vector_value: lv for lv in cc._comparison_levels_excluding_null}
              for cc in active]
    m = [{g: lv.m_probability for g, lv in lv_by_g.items()} for lv_by_g in levels]
    # Where each pattern sits among each comparison's gamma values, for the lookups.
    seen = [{g: patterns[:, j] == g for g in lv_by_g} for j, lv_by_g in enumerate(levels)]

    iterations = 0
    while iterations < training.max_iterations:
        iterations += 1
        weight = np.full(len(counts), math.log2(prob_to_bayes_factor(prior)))
        for j, lv_by_g in enumerate(levels):
            weight += _level_weights(lv_by_g, m[j])[patterns[:, j] + 1]
        # 1 / (1 + 2^-w), written to stay finite for large |w| (as Splink's SQL does).
        odds = np.exp2(-np.abs(weight))
        prob = np.where(weight >= 0, 1.0 / (1.0 + odds), odds / (1.0 + odds))
        expected = prob * counts
        new_prior = float(expected.sum() / total)
        change = abs(new_prior - prior)
        new_m = []
        for j, lv_by_g in enumerate(levels):
            by_g = {g: expected[mask].sum() for g, mask in seen[j].items() if mask.any()}
            denom = sum(by_g.values())
            mj = {g: (m[j][g] if lv._fix_m_probability
                      else float(by_g[g] / denom) if g in by_g else LEVEL_NOT_OBSERVED_TEXT)
                  for g, lv in lv_by_g.items()}
            for g in lv_by_g:
                change = max(change, abs(_as_float(mj[g]) - _as_float(m[j][g])))
            new_m.append(mj)
        m, prior = new_m, new_prior
        if change < training.em_convergence:
            break

    description = f"EM, blocked on: {rule_sql}"
    for j, lv_by_g in enumerate(levels):
        for g, level in lv_by_g.items():
            value = m[j][g]
            if value != LEVEL_NOT_OBSERVED_TEXT:
                # An m that underflowed to 0 would stop Splink with an error; keep its minimum.
                value = max(value, M_U_CLAMP_MIN)
            level._add_trained_m_probability(value, description)
    linker._populate_m_u_from_trained_values()
    return {"pairs": int(total), "iterations": iterations, "prior": prior,
            "comparisons": [cc.output_column_name for cc in active]}
