"""Blocking rules chosen under a budget from group-size counts, and the prior and
threshold read from scored pairs."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from linkage.blocking import (
    BlockingError,
    choose_rules,
    count_comparisons,
    count_new_pairs,
    estimate_comparisons,
    group_size_stats,
)
from linkage.calibrate import estimate_prior, expected_f1_threshold
from linkage.clk import band_columns
from linkage.settings import SettingsError, default_settings, validate_settings


def _table(n: int, seed: int = 1) -> duckdb.DuckDBPyConnection:
    """n records: `a` in blocks of ~4 (small), `big` in blocks of ~n/3 (explodes),
    `x`/`y` two columns whose values cross over (for swap rules)."""
    rng = np.random.default_rng(seed)
    con = duckdb.connect()
    a = rng.integers(0, n // 4, n)
    big = rng.integers(0, 3, n)
    x = rng.integers(0, n // 2, n)
    y = rng.integers(0, n // 2, n)
    ids = np.arange(n)
    frame = pa.table({"unique_id": ids, "a": a, "big": big, "x": x, "y": y,
                      "k": pa.array(ids % 7, mask=ids % 5 != 0)})  # mostly null
    con.register("frame", frame)
    con.execute("CREATE TABLE t AS SELECT * FROM frame")
    return con


def _joined(con, rule: str) -> int:
    return con.execute(f"SELECT count(*) FROM t l JOIN t r ON {rule} AND l.unique_id < r.unique_id").fetchall()[0][0]


@pytest.mark.parametrize("rule", [
    "l.a = r.a", "l.big = r.big", "l.a = r.a AND l.big = r.big", "l.k = r.k",
    "l.x = r.y AND l.y = r.x",  # a swap rule: symmetric, counted exactly
])
def test_group_size_counts_equal_the_join(rule):
    con = _table(400)
    assert count_comparisons(con, "t", rule) == _joined(con, rule)


def test_group_size_stats_describe_the_groups():
    con = _table(400)
    stats = group_size_stats(con, "t", "l.a = r.a")
    sizes = [n for (n,) in con.execute("SELECT count(*) FROM t GROUP BY a").fetchall()]
    assert stats["largest_group"] == max(sizes)
    assert stats["groups"] == sum(1 for n in sizes if n > 1)
    assert stats["records_in_groups"] == sum(n for n in sizes if n > 1)
    assert stats["comparisons"] == _joined(con, "l.a = r.a")
    with pytest.raises(BlockingError):
        group_size_stats(con, "t", "l.x = r.y")


@pytest.mark.parametrize("rule", ["l.big = r.big", "l.a = r.a", "l.x = r.x"])
def test_comparisons_estimated_from_a_random_sample_are_near_the_full_count(rule):
    """What the sizing plan does for a national file: count on a uniform sample, scale by
    1 / p^2. A 20% sample of 20,000 records lands within 10% of the full count (the
    exploding rule: within 1%)."""
    con = _table(20_000, seed=3)
    full = count_comparisons(con, "t", rule)
    con.execute("CREATE TABLE s AS SELECT * FROM t WHERE hash(unique_id + 11) % 5 = 0")
    estimate = estimate_comparisons(con, "s", rule, 20_000)
    assert full > 0 and abs(estimate - full) < 0.10 * full, (estimate, full)


def test_one_sided_cross_column_rule_is_counted_by_orientation_on_average():
    con = _table(2000)
    # l.x = r.y holds for i<j or for i>j about equally often: half the ordered pairs
    counted, joined = count_comparisons(con, "t", "l.x = r.y"), _joined(con, "l.x = r.y")
    assert abs(counted - joined) < 0.2 * joined


def test_small_blocks_join_and_exploding_blocks_drop_out_as_the_data_grows():
    candidates = ["l.big = r.big", "l.a = r.a", "l.a = r.a AND l.big = r.big", "l.x = r.y AND l.y = r.x"]
    for n in (300, 3000):
        con = _table(n)
        chosen, report, records, total = choose_rules(con, "t", candidates, max_per_record=6.0)
        assert records == n
        assert "l.big = r.big" not in chosen  # ~n/6 per record: never within budget
        assert "l.a = r.a" in chosen  # ~2 per record whatever n
        # a rule containing a chosen rule's terms adds nothing: not run
        assert "l.a = r.a AND l.big = r.big" not in chosen
        assert total <= 6.0 * n
        # the total is the exact number of distinct pairs the chosen rules block
        union = " OR ".join(f"({r})" for r in chosen)
        assert total == con.execute(
            f"SELECT count(*) FROM t l, t r WHERE l.unique_id < r.unique_id AND ({union})").fetchall()[0][0]
        reasons = {r.rule: r.reason for r in report}
        assert "budget" in reasons["l.big = r.big"]
    # with a tiny population even the big block fits
    con = _table(12)
    chosen, *_ = choose_rules(con, "t", candidates, max_per_record=6.0)
    assert "l.big = r.big" in chosen


def test_new_pairs_exclude_those_a_chosen_rule_blocks():
    con = _table(500)
    only_a = count_new_pairs(con, "t", "l.a = r.a", [])
    assert only_a == _joined(con, "l.a = r.a")
    assert count_new_pairs(con, "t", "l.a = r.a", ["l.a = r.a"]) == 0


def test_candidates_naming_missing_columns_are_skipped_and_none_fitting_is_an_error():
    con = _table(100)
    chosen, report, *_ = choose_rules(con, "t", ["l.nope = r.nope", "l.a = r.a"], 6.0)
    assert chosen == ["l.a = r.a"]
    assert "not in the records" in report[0].reason
    with pytest.raises(BlockingError, match="budget"):
        choose_rules(con, "t", ["l.big = r.big"], 1.0)


def test_blocking_settings_are_validated():
    doc = default_settings()
    assert validate_settings(doc) is doc
    doc["blocking"]["candidates"] = ["l.a = r.a OR l.b = r.b"]
    with pytest.raises(SettingsError, match="conjunction"):
        validate_settings(doc)
    doc = default_settings()
    doc["blocking"]["max_comparisons_per_record"] = 0
    with pytest.raises(SettingsError, match="max_comparisons_per_record"):
        validate_settings(doc)
    doc = default_settings()
    del doc["blocking"]
    with pytest.raises(SettingsError, match="blocking_rules_to_generate_predictions"):
        validate_settings(doc)  # neither fixed rules nor candidates
    doc = default_settings()
    doc["thresholds"]["cluster_match_probability"] = "high"
    with pytest.raises(SettingsError, match="auto"):
        validate_settings(doc)


def test_prior_is_recovered_from_scored_pairs_with_m_and_u_fixed():
    """Simulated pairs: matches have Bayes factors around 2^20, non-matches around 2^-2;
    the blocked pairs are all matches plus some non-matches; the rest of the population's
    pairs are non-matches no rule blocked. EM on lambda alone finds the true share."""
    rng = np.random.default_rng(3)
    total_pairs = 5e7
    true_prior = 2e-4
    matches = int(true_prior * total_pairs)
    bayes = np.concatenate([rng.normal(20, 3, matches), rng.normal(-2, 3, 20 * matches)])
    for start in (1e-6, 1e-4, 1e-2):
        got = estimate_prior(bayes, total_pairs, start)
        assert got == pytest.approx(true_prior, rel=0.02)


def test_expected_f1_threshold_sits_where_calibrated_probabilities_say():
    p = np.array([0.999] * 90 + [0.8] * 5 + [0.3] * 5 + [0.01] * 100)
    t, f1 = expected_f1_threshold(p)
    # linking the 0.3 pairs costs more false links (3.5) than it finds (1.5)
    assert t == pytest.approx(0.8)
    assert 0.9 < f1 < 1
    assert expected_f1_threshold(np.array([0.2, 0.1]))[0] == 0.5  # never below the floor
    assert not math.isnan(expected_f1_threshold(np.array([]))[0])


def test_filter_bands_come_after_the_keys_and_only_when_the_keys_leave_room():
    """Band candidates (columns band_<clk>_<i>) are admitted after every other candidate,
    whatever their cost, and their columns are derived (the hook) only when the keys leave
    at least BUDGET_FULL of the budget."""
    from linkage.blocking import BUDGET_FULL

    con = _table(400)
    # A stand-in for a band: a cheap column the hook adds (the real one derives filter words).
    derived = []

    def add_bands(rules):
        derived.append(rules)
        con.execute("ALTER TABLE t ADD COLUMN band_clk_x_0 BIGINT")
        con.execute("UPDATE t SET band_clk_x_0 = unique_id // 2")  # pairs 0-1, 2-3, ...

    band = "l.band_clk_x_0 = r.band_clk_x_0"
    keys_total = choose_rules(con, "t", ["l.a = r.a"], 100.0)[3]
    # Room left: the band is counted after the key (its pairs are cheaper, yet it comes last).
    chosen, report, n, total = choose_rules(con, "t", [band, "l.a = r.a"], 100.0, 2.0, add_bands)
    assert derived == [[band]]
    assert chosen == [band, "l.a = r.a"]  # settings order
    assert total > keys_total
    assert "total" in {r.rule: r.reason for r in report}[band]
    # The keys fill all but a little of the budget: the band is not counted, nothing derived.
    con2 = _table(400)
    derived.clear()
    tight = keys_total * (1 + BUDGET_FULL / 2) / 400
    chosen, report, *_ = choose_rules(con2, "t", [band, "l.a = r.a"], tight, 2.0, add_bands)
    assert chosen == ["l.a = r.a"] and derived == []
    assert "not counted" in {r.rule: r.reason for r in report}[band]


def test_64_bit_bands_are_counted_only_when_the_keys_and_bands_leave_room():
    """Half bands (band64_<clk>_<i>) come after the whole bands and are derived and counted
    only when the keys and the whole bands leave at least BUDGET_FULL of the budget."""
    from linkage.blocking import BUDGET_FULL

    derived: list[list[str]] = []

    def hook(con):
        def add(rules):
            derived.append(rules)
            for column in sorted({c for r in rules for c in band_columns([r])}):
                con.execute(f"ALTER TABLE t ADD COLUMN {column} BIGINT")
                # whole band: pairs 0-1, 2-3, ...; half band: also 1-2, 3-4, ...
                step = "unique_id // 2" if column.startswith("band_") else "(unique_id + 1) // 2"
                con.execute(f"UPDATE t SET {column} = {step}")
        return add

    band, half = "l.band_clk_x_0 = r.band_clk_x_0", "l.band64_clk_x_0 = r.band64_clk_x_0"
    rules = ["l.a = r.a", band, half]
    con = _table(400)
    with_bands = choose_rules(con, "t", rules[:2], 100.0, 2.0, hook(con))[3]
    con, derived[:] = _table(400), []
    chosen, report, n, total = choose_rules(con, "t", rules, 100.0, 2.0, hook(con))
    assert derived == [[band], [half]] and chosen == rules and total > with_bands
    # The whole band fills all but a little of the budget: the half band is not counted.
    con, derived[:] = _table(400), []
    tight = with_bands * (1 + BUDGET_FULL / 2) / 400
    chosen, report, *_ = choose_rules(con, "t", rules, tight, 2.0, hook(con))
    assert derived == [[band]] and chosen == rules[:2]
    assert "not counted: the match keys and 128-bit bands" in {r.rule: r.reason for r in report}[half]
