"""The Fellegi–Sunter model on encodings, trained and applied with Splink 5 on DuckDB.

Training needs no labels: u by random sampling, the prior (lambda) from deterministic
rules on identifier tokens, m by expectation maximisation on several blocked samples
(Splink's algorithm, iterated in numpy: `linkage.em`).
Term-frequency adjustments apply to the token columns named in the settings.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import secrets
from collections.abc import Callable
from typing import Any

import duckdb
from splink import DuckDBAPI, Linker
from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT
from splink.internals.duckdb.dataframe import DuckDBDataFrame
from splink.internals.exceptions import EMTrainingException
from splink.internals.input_column import InputColumn
from splink.internals.m_u_records_to_parameters import (
    append_u_probability_to_comparison_level_trained_probabilities,
)

from linkage import em
from linkage.clk import DICE_FUNCTION, share_dice
from linkage.settings import splink_settings

RECORDS_TABLE = "records"

# Splink logs every EM iteration, and warns about levels a training sample did not
# observe; the run reports its own progress, and the report shows the parameters.
logging.getLogger("splink").setLevel(logging.ERROR)


class _RecordsFrame(DuckDBDataFrame):
    """The stacked records table, whose columns do not change during a run.

    Splink lists an input table's columns (an information_schema query, then a SQL parse
    of every name) each time it builds a query on it: ~10 times a run, ~15 ms each on
    FEBRL. Listed once here.
    """

    @property
    def columns(self) -> list[InputColumn]:
        cached = self.__dict__.get("_jup_columns")
        if cached is None:
            cached = self.__dict__["_jup_columns"] = DuckDBDataFrame.columns.fget(self)
        return list(cached)


def make_linker(con: duckdb.DuckDBPyConnection, settings_doc: dict[str, Any]) -> Linker:
    """A Linker over the stacked `records` table (unique_id, source, ref, encodings)."""
    db_api = DuckDBAPI(connection=con)
    df = db_api.register(RECORDS_TABLE, dataset_display_name="records")
    df.__class__ = _RecordsFrame
    # Splink's settings validation only writes warnings (columns it cannot find) to its
    # logger; building them parses every level's SQL (~0.1 s on FEBRL), so skip it when
    # that logger would drop them. Bad SQL still fails loudly when the model runs.
    warns = logging.getLogger("splink").isEnabledFor(logging.WARNING)
    return Linker(df, splink_settings(settings_doc), log_level=None, validate_settings=warns)


def linker_for_trained_model(db_api: Any, table: str, trained: dict[str, Any],
                             sql_dialect: str) -> Linker:
    """A Linker over `table` (already in `db_api`'s backend) that applies a trained model
    (`trained_model`'s dict) as it is: no training, the m, u and prior it holds. The Spark
    engine scores with the model the DuckDB stages trained."""
    model = copy.deepcopy(trained)
    model["sql_dialect"] = sql_dialect
    return Linker(db_api.register(table, dataset_display_name=table), model, log_level=None,
                  validate_settings=False)


def train(
    linker: Linker,
    settings_doc: dict[str, Any],
    step: Callable[[str], None] = lambda _name: None,
    per_rule_em: bool = True,
    blocked: tuple[str, list[str]] | None = None,
) -> Callable[[], None] | None:
    """Estimate the prior, u and m in place on the linker.

    With `per_rule_em` False, m keeps the settings' starting values (floored) and the EM
    sessions are not run: a run that re-fits m, u and the prior on its blocked pairs
    (linkage.blocked_em) starts from there. Returns then the function that runs them as
    `train` would have (from the same starting m), for when that fit is refused and the
    trained model is scored instead; None when they ran here. `blocked`: see estimate_u.
    """
    training = settings_doc["training"]
    step("prior")
    try:
        linker.training.estimate_probability_two_random_records_match(
            training["prior_rules"], recall=training["prior_recall"]
        )
    except Exception as exc:  # noqa: BLE001 - Splink raises a bare Exception when no pair matches
        # Too few records for a deterministic match: keep the settings' prior.
        logging.getLogger(__name__).info("prior not estimated: %s", exc)
    step("u")
    estimate_u(linker, training["u_max_pairs"], training.get("seed") or 0, blocked)
    if per_rule_em:
        _m_by_em(linker, settings_doc, step)
        return None
    levels = [lv for cc in linker._settings_obj.comparisons for lv in cc._comparison_levels_excluding_null]
    start = [lv._m_probability for lv in levels]
    floor_disagreement_m(linker, training.get("disagreement_m_floor", 0.0))

    def m_by_em() -> None:
        for lv, m in zip(levels, start, strict=True):
            lv._m_probability = m
        _m_by_em(linker, settings_doc, step)

    return m_by_em


def _m_by_em(linker: Linker, settings_doc: dict[str, Any], step: Callable[[str], None]) -> None:
    """m by one EM session per training rule, then the disagreement floor."""
    training = settings_doc["training"]
    for rule in training["em_blocking_rules"]:
        step(f"m: {rule}")
        # Splink's EM without term frequencies, its iterations run in numpy (linkage.em).
        try:
            em.estimate_m(linker, rule, training["em_max_pairs"], training.get("seed") or 0)
        except EMTrainingException as exc:
            # A rule that blocks no pair here (e.g. no locality in these sources): the other
            # rules train the comparisons; a comparison no rule trains keeps its start m.
            logging.getLogger(__name__).info("EM session skipped: %s", exc)
    floor_disagreement_m(linker, training.get("disagreement_m_floor", 0.0))


def floor_disagreement_m(linker: Linker, floor: float) -> list[str]:
    """Raise m of each comparison's "all other" level to at least `floor`.

    EM can drive m of a disagreement level to ~0 (it did for "sex differs": 3e-13), which
    makes that one field a veto (-40 bits) whatever else agrees; a recording error in a
    single field must not outweigh every other field. Returns the comparisons changed.
    """
    changed = []
    if floor <= 0:
        return changed
    for comp in linker._settings_obj.comparisons:
        levels = comp._comparison_levels_excluding_null
        other = [lv for lv in levels if lv._is_else_level]
        if not other:
            continue
        level = other[0]
        m = level.m_probability
        # Never observed by EM (Splink then reports its placeholder m) counts as below the
        # floor too: with match keys, the blocked training pairs of a small population can
        # hold no matching pair that disagrees on a whole comparison.
        if not level._m_is_trained or m is None or m < floor:
            # Set directly, not added to the trained history: Splink would take the
            # median of that history if anything re-populated m afterwards.
            level.m_probability = floor
            changed.append(comp.output_column_name)
    return changed


def _sample_size_for_pairs(pairs: float) -> int:
    # n records give n(n-1)/2 pairs; solve for n.
    return int(math.ceil(0.5 * (math.sqrt(8 * pairs + 1) + 1)))


def estimate_u(linker: Linker, max_pairs: float, seed: int,
               blocked: tuple[str, list[str]] | None = None) -> dict[str, dict[int, int]]:
    """u by random sampling, in one pass over the sampled pairs.

    Splink's own estimator runs one chunked query per comparison (each re-joining the
    sample, ~90 queries in all); with several Dice levels per comparison that was most
    of a FEBRL-size link. Here every comparison's level is computed in a single scan of
    the sampled pairs, and counted per comparison. The estimate is Splink's: u of a
    level = its share of the sampled pairs whose comparison is not null; a level never
    seen is not left at Splink's placeholder (below).
    Returns the counts (comparison -> level value -> pairs) for tests and the report.

    Unlike Splink, a level seen fewer than MIN_OBSERVED_FOR_SAMPLED_U times in the sample
    is not left to chance: when its condition requires equal columns (`a_l = b_r AND ...`)
    and the pairs sharing those values are few enough to join, u is counted exactly over
    all of them (the share of all non-null pairs at that level); otherwise it is the
    sample's share, smoothed (Jeffreys: half a pair for an unseen level).
    `blocked` (the blocked pairs' comparison vectors table, linkage.predict, and the
    blocking rules): a level whose required equal columns include a rule's holds only
    blocked pairs, so its exact count is read from their vectors instead of a join.
    """
    settings_obj = linker._settings_obj
    comparisons = settings_obj.comparisons
    con = linker._db_api._con
    n_sample = _sample_size_for_pairs(max_pairs)
    cases, clks = share_dice([c._case_statement.replace("\n", " ") for c in comparisons])
    columns = em.used_columns(con, cases, clks)
    pair_cols = ", ".join(f"l.{c} AS {c}_l, r.{c} AS {c}_r" for c in columns)
    # A seeded hash order is a deterministic sample whatever the thread count.
    sample = (
        f"SELECT {', '.join(['unique_id', *columns])} FROM {RECORDS_TABLE} "
        f"ORDER BY hash(unique_id + {int(seed)}), unique_id LIMIT {n_sample}"
    )
    dice = "".join(f", {DICE_FUNCTION}(l.{c}, r.{c}) AS __jup_dice_{c}" for c in clks)
    table = f"__jup_u_gammas_{secrets.token_hex(4)}"
    con.execute(
        f"""CREATE TEMP TABLE {table} AS
            WITH s AS ({sample}),
                 pairs AS (SELECT {pair_cols}{dice} FROM s l JOIN s r ON l.unique_id < r.unique_id)
            SELECT {', '.join(cases)} FROM pairs"""
    )
    counts: dict[str, dict[int, int]] = {}
    u_source: dict[tuple[str, int], str] = {}
    try:
        sample_pairs = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        for comp in comparisons:
            gamma = comp._gamma_column_name
            rows = con.execute(
                f"SELECT {gamma}, count(*) FROM {table} WHERE {gamma} <> -1 GROUP BY ALL"
            ).fetchall()
            counts[comp.output_column_name] = {int(g): int(n) for g, n in rows}
    finally:
        con.execute(f"DROP TABLE {table}")
    n_records = con.execute(f"SELECT count(*) FROM {RECORDS_TABLE}").fetchall()[0][0]
    all_pairs = n_records * (n_records - 1) / 2.0
    for comp in comparisons:
        seen = counts[comp.output_column_name]
        total = sum(seen.values())
        levels = comp._comparison_levels_excluding_null
        u_of: dict[int, float] = {}
        for level in levels:
            g = level.comparison_vector_value
            n = seen.get(g, 0)
            exact = None
            if n < MIN_OBSERVED_FOR_SAMPLED_U and total and not level._is_else_level:
                # Rare in the sample: count this level over every pair that can reach it.
                non_null_pairs = all_pairs * total / max(sample_pairs, 1)
                exact = _exact_level_count(con, comp, level, n_records, blocked)
                if exact is not None:
                    u_of[g] = max(exact, 0.5) / max(non_null_pairs, 1.0)
            if g not in u_of and not total:
                u_of[g] = LEVEL_NOT_OBSERVED_TEXT
            elif g not in u_of and (n >= MIN_OBSERVED_FOR_SAMPLED_U or level._is_else_level):
                u_of[g] = max(n, 0.5) / total
            elif g not in u_of:
                # Jeffreys smoothing: an unseen level gets about half a pair, never
                # Splink's placeholder (which made a rare swap level worth +2 bits, not +14).
                u_of[g] = (n + 0.5) / (total + 0.5 * len(levels))
            u_source[(comp.output_column_name, g)] = "exact" if exact is not None else "sampled"
        lookup = {comp.output_column_name: {g: {"u_probability": u} for g, u in u_of.items()}}
        for level in levels:
            append_u_probability_to_comparison_level_trained_probabilities(
                level, lookup, comp.output_column_name, "estimate u by random sampling"
            )
    linker._populate_m_u_from_trained_values()
    return counts


MIN_OBSERVED_FOR_SAMPLED_U = 50
# Pairs an exact u count may join (per record of the population).
EXACT_U_MAX_PAIRS_PER_RECORD = 30

_SIDE_EQUALITY = re.compile(r"^\(?\s*\"?(\w+)_([lr])\"?\s*=\s*\"?(\w+)_([lr])\"?\s*\)?$")


def _top_level_conjuncts(sql: str) -> list[str]:
    parts, depth, start, upper = [], 0, 0, sql.upper()
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and upper.startswith(" AND ", i):
            parts.append(sql[start:i])
            start = i + 5
            i += 4
        elif depth == 0 and upper.startswith(" OR ", i):
            return []  # a disjunction at the top: no column must be equal
        i += 1
    parts.append(sql[start:])
    return [p.strip() for p in parts]


def level_equality_terms(sql: str) -> list[tuple[str, str]]:
    """The `x_l = y_r` terms a level's condition requires (top-level conjuncts), as (x, y)."""
    terms = []
    for part in _top_level_conjuncts(sql):
        m = _SIDE_EQUALITY.match(part)
        if m and {m.group(2), m.group(4)} == {"l", "r"}:
            a, b = (m.group(1), m.group(3)) if m.group(2) == "l" else (m.group(3), m.group(1))
            terms.append((a, b))
    return terms


def _exact_level_count(con: Any, comp: Any, level: Any, n_records: int,
                       blocked: tuple[str, list[str]] | None = None) -> int | None:
    """Pairs (l.unique_id < r.unique_id) whose comparison takes this level, counted over
    every pair that agrees on the level's required equal columns; None when the level
    requires none or those pairs are too many to join. With `blocked` (see estimate_u),
    from the blocked pairs' vectors when a blocking rule requires a subset of them."""
    from linkage.blocking import count_comparisons
    from linkage.settings import equality_terms

    terms = level_equality_terms(level.sql_condition)
    if not terms:
        return None
    rule = " AND ".join(f"l.{a} = r.{b}" for a, b in terms)
    if count_comparisons(con, RECORDS_TABLE, rule) > EXACT_U_MAX_PAIRS_PER_RECORD * max(n_records, 1):
        return None
    if blocked is not None:
        vectors, rules = blocked
        if any(set(equality_terms(r) or [None]) <= set(terms) for r in rules):
            return int(con.execute(
                f"SELECT count(*) FROM {vectors} WHERE {comp._gamma_column_name} = "
                f"{int(level.comparison_vector_value)}").fetchall()[0][0])
    cases, clks = share_dice([comp._case_statement.replace("\n", " ")])
    pair_cols = em.pair_columns(con, cases, clks)
    dice = "".join(f", {DICE_FUNCTION}(l.{c}, r.{c}) AS __jup_dice_{c}" for c in clks)
    gamma = comp._gamma_column_name
    row = con.execute(
        f"""SELECT count(*) FROM (SELECT {cases[0]} FROM (
                SELECT {pair_cols}{dice} FROM {RECORDS_TABLE} l JOIN {RECORDS_TABLE} r
                ON {rule} AND l.unique_id < r.unique_id))
            WHERE {gamma} = {int(level.comparison_vector_value)}"""
    ).fetchall()
    return int(row[0][0])


def trained_model(linker: Linker) -> dict[str, Any]:
    """The trained Splink settings (what `model.json` holds)."""
    return linker.misc.save_model_to_json()
