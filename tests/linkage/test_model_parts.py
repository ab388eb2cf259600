"""The parts of the linkage model that replace or adjust Splink's defaults: Dice on CLK
words, the one-pass u estimator, the m floor, and the blocking rules person scoring uses."""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pytest
from splink import DuckDBAPI, Linker

from connectors.keys import KeyRing, new_master_secret
from linkage import em, model
from linkage.blocking import settings_with_chosen_rules
from linkage.clk import clk_struct_sql, create_dice_macro, words_for_bits
from linkage.ingest import clk_bits_of, extract_from_dir, stack_sql
from linkage.predict import comparison_vectors, predict_with_blocking_counts
from linkage.settings import (
    SettingsError,
    default_settings,
    equality_terms,
    splink_settings,
    validate_settings,
)
from tests.linkage.quality import build_extracts

logging.getLogger("splink").setLevel(logging.ERROR)


def _random_clks(rng: np.random.Generator, n: int, n_bytes: int) -> list[bytes | None]:
    # Sparse-ish filters like real CLKs (about 1/4 of bits set), high bits included.
    out: list[bytes | None] = []
    for i in range(n):
        if i % 17 == 0:
            out.append(None)
            continue
        bits = rng.random(n_bytes * 8) < 0.25
        out.append(np.packbits(bits).tobytes())
    return out


@pytest.mark.parametrize("clk_bits", [1024, 1088, 64])
def test_word_dice_equals_bit_string_dice(clk_bits):
    rng = np.random.default_rng(clk_bits)
    clks = _random_clks(rng, 60, clk_bits // 8)
    con = duckdb.connect()
    words = words_for_bits(clk_bits)
    create_dice_macro(con, words)
    con.execute("CREATE TABLE t (id INTEGER, clk BLOB)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(clks)))
    con.execute(f"CREATE TABLE w AS SELECT id, clk, {clk_struct_sql('clk', words)} AS s FROM t")
    rows = con.execute(
        """SELECT jup_dice(l.s, r.s),
                  2.0 * bit_count(l.clk::BIT & r.clk::BIT)
                      / (bit_count(l.clk::BIT) + bit_count(r.clk::BIT)),
                  l.clk IS NULL OR r.clk IS NULL
           FROM w l, w r"""
    ).fetchall()
    assert len(rows) == 3600
    for ours, reference, has_null in rows:
        if has_null:
            assert ours is None
        else:
            assert ours == pytest.approx(reference, abs=1e-12)
    # a CLK against itself is 1, and some pairs are neither 0 nor 1
    assert {round(r[0], 9) for r in rows if r[0] is not None} - {0.0, 1.0}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_parts")
    dirs = build_extracts(root / "src", root / "staged", KeyRing(new_master_secret(), "p"), 150, seed=5)
    extracts = [extract_from_dir(d) for d in dirs.values()]
    return extracts


def _linker(extracts, settings):
    con = duckdb.connect()
    words = words_for_bits(clk_bits_of(extracts))
    create_dice_macro(con, words)
    con.execute(f"CREATE TABLE records AS {stack_sql(extracts, words)}")
    if settings.get("blocking"):
        # the rules a run would choose, plus any the test added
        added = settings["splink"]["blocking_rules_to_generate_predictions"]
        chosen, _info = settings_with_chosen_rules(con, "records", settings)
        settings = chosen
        settings["splink"]["blocking_rules_to_generate_predictions"] += added
    return con, model.make_linker(con, settings)


def test_one_pass_u_equals_splink_on_all_pairs(small):
    """With a budget above the number of pairs both estimators see every pair, so their u
    must agree exactly: same levels, same shares, same 'not observed' levels."""
    settings = default_settings()
    con, ours = _linker(small, settings)
    n = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    budget = float(n * n)  # more than n(n-1)/2
    counts = model.estimate_u(ours, budget, seed=1)
    assert sum(counts["date_of_birth"].values()) > 0
    db_api = DuckDBAPI(connection=con)
    splinks = Linker(db_api.register("records"), splink_settings(settings), log_level=None)
    splinks.training.estimate_u_using_random_sampling(
        max_pairs=budget, seed=1, min_count_per_level=None, num_chunks=1
    )
    compared = exact_rare = 0
    for mine, theirs in zip(ours._settings_obj.comparisons, splinks._settings_obj.comparisons,
                            strict=True):
        seen = counts[mine.output_column_name]
        total = sum(seen.values())
        levels = mine._comparison_levels_excluding_null
        for a, b in zip(levels, theirs._comparison_levels_excluding_null, strict=True):
            where = (mine.output_column_name, a.label_for_charts)
            n_seen = seen.get(a.comparison_vector_value, 0)
            rare = n_seen < model.MIN_OBSERVED_FOR_SAMPLED_U and not a._is_else_level
            if rare and model.level_equality_terms(a.sql_condition):
                # counted exactly over all pairs: Splink's share when it saw the level (the
                # sample here is every pair), else half a pair, never Splink's placeholder
                expected = max(n_seen, 0.5) / total
                assert a.u_probability == pytest.approx(expected, rel=1e-9), where
                exact_rare += 1
            elif rare:
                # smoothed (Jeffreys)
                assert a.u_probability == pytest.approx(
                    (n_seen + 0.5) / (total + 0.5 * len(levels)), rel=1e-9), where
            elif not b._u_is_trained:
                # Splink never saw it and keeps its placeholder u; ours: the share seen
                # (half a pair when none)
                assert a.u_probability == pytest.approx(max(n_seen, 0.5) / total, rel=1e-9), where
            else:
                assert a.u_probability == pytest.approx(b.u_probability, rel=1e-9), where
            compared += 1
    n_levels = sum(len(c["comparison_levels"]) - sum(bool(lv.get("is_null_level")) for lv in c["comparison_levels"])
                   for c in settings["splink"]["comparisons"])
    assert compared == n_levels >= 15 and exact_rare >= 1


def _prior_and_u(linker, settings):
    training = settings["training"]
    linker.training.estimate_probability_two_random_records_match(
        training["prior_rules"], recall=training["prior_recall"])
    model.estimate_u(linker, training["u_max_pairs"], seed=1)


def test_numpy_em_equals_splink_em(small):
    """linkage.em runs Splink's EM (no term frequencies) with its iterations in numpy:
    from the same prior and u, both sessions give the same m for every level, the same
    'not observed' levels and the same number of iterations."""
    settings = default_settings()
    _, ours = _linker(small, settings)
    _, theirs = _linker(small, settings)
    for linker in (ours, theirs):
        _prior_and_u(linker, settings)
    compared = 0
    for rule in settings["training"]["em_blocking_rules"]:
        info = em.estimate_m(ours, rule, max_pairs=1e9)
        session = theirs.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=1e9)
        assert info["iterations"] == len(session._core_model_settings_history) - 1
        assert info["prior"] == pytest.approx(
            session.core_model_settings.probability_two_random_records_match, rel=1e-9)
        assert sorted(info["comparisons"]) == sorted(
            c.output_column_name for c in session.core_model_settings.comparisons)
        assert info["pairs"] > 50
    for mine, splinks in zip(ours._settings_obj.comparisons, theirs._settings_obj.comparisons,
                             strict=True):
        for a, b in zip(mine._comparison_levels_excluding_null,
                        splinks._comparison_levels_excluding_null, strict=True):
            where = (mine.output_column_name, a.label_for_charts)
            assert [t["probability"] == "level not observed" for t in a._trained_m_probabilities] == [
                t["probability"] == "level not observed" for t in b._trained_m_probabilities], where
            assert a.m_probability == pytest.approx(b.m_probability, rel=1e-9, abs=1e-15), where
            compared += 1
    assert compared >= 15


def test_em_samples_records_past_max_pairs(small):
    settings = default_settings()
    con, linker = _linker(small, settings)
    _prior_and_u(linker, settings)
    rule = "l.mk_names_yob = r.mk_names_yob"
    blocked = con.execute(
        f"SELECT count(*) FROM records l JOIN records r ON {rule} AND l.unique_id < r.unique_id"
    ).fetchall()[0][0]
    # exact count for an equality conjunction, estimate from a probe otherwise
    assert em._blocked_pair_count(con, rule) == blocked
    assert em._blocked_pair_count(con, "l.mk_names_yob = r.mk_names_yob AND true") >= 0
    info = em.estimate_m(linker, rule, max_pairs=blocked / 10, seed=3)
    assert blocked / 40 < info["pairs"] < blocked / 2.5
    full = em.estimate_m(linker, rule, max_pairs=None)
    assert full["pairs"] == blocked
    bad = default_settings()
    _, linker = _linker(small, bad)
    with pytest.raises(Exception, match="no record pairs"):
        em.estimate_m(linker, "l.tk_nhs = r.tk_nhs AND l.unique_id = r.unique_id")


def test_blocking_counts_from_predict_equal_splinks_chart_records(small):
    """The report's blocking-rule chart: counts taken from the pairs predict blocked are
    Splink's own exact counts (every field of its records), and the scores are Splink's."""
    settings = default_settings()
    settings["splink"]["blocking_rules_to_generate_predictions"].append(
        "l.mk_names_yob = r.mk_names_yob AND l.mk_name_dob <> r.mk_name_dob")  # not an equi-join: Splink describes it
    settings["splink"]["retain_intermediate_calculation_columns"] = True  # compare each comparison's weight too
    con, linker = _linker(small, settings)
    _prior_and_u(linker, settings)
    n = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    predictions, ours = predict_with_blocking_counts(linker, 0.5, n)
    theirs = linker.blocking_analysis.count_comparisons_from_blocking_rules(record_sample_proportion=1.0)
    assert ours == theirs
    assert sum(r["marginal_comparison_count"] for r in ours) > 100
    assert ours[-1]["filter_conditions"]
    scored = predictions.as_pandas_dataframe()
    again = linker.inference.predict(threshold_match_probability=0.5,
                                     warning_mode="never").as_pandas_dataframe()
    # predict_with_blocking_counts scores with each Dice computed once per pair: the same
    # columns, per-comparison weights and probabilities as Splink's own predict
    assert list(scored.columns) == list(again.columns)
    n_comparisons = len(settings["splink"]["comparisons"])
    assert len(scored) > 100 and sum(c.startswith("mw_") for c in scored.columns) == n_comparisons
    key = ["unique_id_l", "unique_id_r"]
    assert scored.sort_values(key).reset_index(drop=True).equals(
        again.sort_values(key).reset_index(drop=True))


def test_comparison_vectors_computed_once_give_the_same_patterns_and_scores(small):
    """A run that fits EM on its blocked pairs computes their comparison vectors once:
    their pattern counts are those computed from the pairs, and predict over them gives
    the same scores and blocking counts as predict over the blocked pairs."""
    settings = default_settings()
    settings["splink"]["retain_intermediate_calculation_columns"] = True
    con, linker = _linker(small, settings)
    _prior_and_u(linker, settings)
    n = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    direct, direct_counts = predict_with_blocking_counts(linker, 0.5, n)
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    vectors = comparison_vectors(linker, blocked)
    comparisons = list(linker._settings_obj.comparisons)
    from_pairs = em.pattern_counts(
        con, comparisons, f"{blocked.physical_name} b JOIN records l ON l.unique_id = b.join_key_l "
        "JOIN records r ON r.unique_id = b.join_key_r")
    from_vectors = em.vector_pattern_counts(con, comparisons, f"{vectors.physical_name} b")
    assert from_pairs[1].sum() > 100 and len(from_pairs[1]) > 10
    assert np.array_equal(from_pairs[0], from_vectors[0]) and np.array_equal(from_pairs[1], from_vectors[1])
    reused, reused_counts = predict_with_blocking_counts(linker, 0.5, n, vectors)
    assert reused_counts == direct_counts
    key = ["unique_id_l", "unique_id_r"]
    a, b = direct.as_pandas_dataframe(), reused.as_pandas_dataframe()
    assert len(a) > 100 and list(a.columns) == list(b.columns)
    assert a.sort_values(key).reset_index(drop=True).equals(b.sort_values(key).reset_index(drop=True))
    # the vectors are dropped once scored
    assert vectors.physical_name not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}


def test_disagreement_m_is_floored_and_validated(small):
    settings = default_settings()
    settings["training"]["disagreement_m_floor"] = 0.002
    _con, linker = _linker(small, settings)
    model.train(linker, settings)
    for comp in linker._settings_obj.comparisons:
        other = [lv for lv in comp._comparison_levels_excluding_null if lv._is_else_level][0]
        assert other.m_probability >= 0.002, comp.output_column_name
    # EM sees no true pair that disagrees on a whole identifier on this data; the floor is what is left
    nino = next(c for c in linker._settings_obj.comparisons if c.output_column_name == "nino")
    assert nino._comparison_levels_excluding_null[-1].m_probability == pytest.approx(0.002)
    bad = default_settings()
    bad["training"]["disagreement_m_floor"] = 0.7
    with pytest.raises(SettingsError, match="disagreement_m_floor"):
        validate_settings(bad)


def test_floor_leaves_higher_m_alone(small):
    settings = default_settings()
    _con, linker = _linker(small, settings)
    model.train(linker, settings)
    before = {c.output_column_name: [lv.m_probability for lv in c._comparison_levels_excluding_null]
              for c in linker._settings_obj.comparisons}
    changed = model.floor_disagreement_m(linker, 1e-9)
    after = {c.output_column_name: [lv.m_probability for lv in c._comparison_levels_excluding_null]
             for c in linker._settings_obj.comparisons}
    assert changed == [] or all(before[c][-1] < 1e-9 for c in changed)
    assert {c: v for c, v in before.items() if c not in changed} == {
        c: v for c, v in after.items() if c not in changed
    }


def test_default_blocking_rules_are_scoreable_conjunctions():
    rules = default_settings()["splink"]["blocking_rules_to_generate_predictions"]
    for rule in rules:
        terms = equality_terms(rule)
        assert terms, rule  # person scoring binds every rule to the probe's values
        # no rule blocks on a low-cardinality field alone (blocks would grow with the
        # population): a lone term must be an identifier or a match key (a combination)
        if len(terms) == 1:
            assert terms[0][0].startswith(("tk_nhs", "tk_nino", "mk_")), rule


def _guarded(records, edges, threshold=0.95, across_sources=False):
    from linkage.clustering import cluster_with_identifier_guard

    con = duckdb.connect()
    con.execute("CREATE TABLE recs (unique_id BIGINT, source VARCHAR, tk_nhs BIGINT, tk_nino BIGINT)")
    con.executemany("INSERT INTO recs VALUES (?, ?, ?, ?)", records)
    con.execute("CREATE TABLE preds (unique_id_l BIGINT, unique_id_r BIGINT, match_probability DOUBLE)")
    con.executemany("INSERT INTO preds VALUES (?, ?, ?)", edges)
    table, refused = cluster_with_identifier_guard(con, "preds", "recs", threshold,
                                                   identifiers_across_sources=across_sources)
    rows = con.execute(f"SELECT unique_id, cluster_id FROM {table}").fetchall()
    groups: dict = {}
    for uid, cid in rows:
        groups.setdefault(cid, set()).add(uid)
    return sorted(sorted(g) for g in groups.values()), refused


def test_guard_refuses_a_chain_joining_conflicting_nhs_numbers_of_one_source():
    records = [(1, "nhs", 10, None), (2, "dwp", None, 7), (3, "nhs", 20, None), (4, "dwp", None, None)]
    # 1-2 strong, 2-3 weak but above threshold: plain components would give {1, 2, 3}
    clusters, refused = _guarded(records, [(1, 2, 0.99), (2, 3, 0.96), (3, 4, 0.97), (1, 4, 0.5)])
    assert clusters == [[1, 2], [3, 4]] and refused == 1
    # the strongest links win: had 2-3 been the strong one, 1 would be left out instead
    clusters, _ = _guarded(records, [(1, 2, 0.96), (2, 3, 0.99)])
    assert clusters == [[1], [2, 3], [4]]


def test_guard_allows_duplicates_with_the_same_identifier_and_other_sources():
    records = [(1, "nhs", 10, None), (2, "nhs", 10, None), (3, "dwp", None, 5),
               (4, "council", None, 6), (5, "nhs", None, None)]
    # same NHS number twice in one source (a duplicate), NINOs from different sources,
    # and a record with no identifier: nothing conflicts, one entity
    clusters, refused = _guarded(records, [(1, 2, 0.99), (2, 3, 0.98), (3, 4, 0.97), (4, 5, 0.96)])
    assert clusters == [[1, 2, 3, 4, 5]] and refused == 0
    # a NINO conflict inside one source is refused too
    records = [(1, "dwp", None, 5), (2, "council", None, None), (3, "dwp", None, 6)]
    clusters, refused = _guarded(records, [(1, 2, 0.99), (2, 3, 0.98)])
    assert clusters == [[1, 2], [3]] and refused == 1


def test_guard_across_sources_refuses_a_chain_joining_two_agencies_identifiers():
    # Rachel's NHS record (NHS A) - a DWP record - Isaac's council record (NHS B): each
    # link alone is plausible (date of birth + postcode), together they join two people
    records = [(1, "nhs", 10, None), (2, "dwp", None, None), (3, "council", 20, None),
               (4, "housing", 10, 5), (5, "dwp", None, 5)]
    edges = [(1, 2, 0.99), (2, 3, 0.97), (1, 4, 0.98), (4, 5, 0.96)]
    clusters, refused = _guarded(records, edges)
    assert clusters == [[1, 2, 3, 4, 5]] and refused == 0  # within source: nothing conflicts
    clusters, refused = _guarded(records, edges, across_sources=True)
    # 1-2, 1-4 and 4-5 agree (NHS 10 twice, NINO 5 twice); 2-3 would add NHS 20
    assert clusters == [[1, 2, 4, 5], [3]] and refused == 1


def test_one_record_per_source_keeps_the_strongest_link_only():
    from linkage.clustering import cluster_with_identifier_guard

    con = duckdb.connect()
    con.execute("CREATE TABLE recs (unique_id BIGINT, source VARCHAR, tk_nhs BIGINT, tk_nino BIGINT)")
    con.executemany("INSERT INTO recs VALUES (?, ?, NULL, NULL)",
                    [(1, "a"), (2, "b"), (3, "a"), (4, "b")])
    con.execute("CREATE TABLE preds (unique_id_l BIGINT, unique_id_r BIGINT, match_probability DOUBLE)")
    # 1-2 and 3-4 are strong; 2-3 is a weaker cross link that would chain all four
    con.executemany("INSERT INTO preds VALUES (?, ?, ?)", [(1, 2, 0.999), (3, 4, 0.998), (2, 3, 0.97)])
    for one_per_source, expected in ((False, [[1, 2, 3, 4]]), (True, [[1, 2], [3, 4]])):
        table, refused = cluster_with_identifier_guard(con, "preds", "recs", 0.95, one_per_source)
        groups: dict = {}
        for uid, cid in con.execute(f"SELECT unique_id, cluster_id FROM {table}").fetchall():
            groups.setdefault(cid, set()).add(uid)
        assert sorted(sorted(g) for g in groups.values()) == expected
        assert refused == (1 if one_per_source else 0)


def test_clustering_settings_are_validated():
    doc = default_settings()
    assert doc["clustering"] == {"one_record_per_source": False, "join_groups_match_probability": 0.95,
                                 "identifier_guard": "across_sources"}
    validate_settings(doc)
    doc["clustering"] = {"identifier_guard": "everywhere"}
    with pytest.raises(SettingsError, match="identifier_guard must be one of"):
        validate_settings(doc)
    doc["clustering"] = {"one_record_per_source": "yes"}
    with pytest.raises(SettingsError, match="clustering"):
        validate_settings(doc)
    doc["clustering"] = {"merge_everything": True}
    with pytest.raises(SettingsError, match="clustering"):
        validate_settings(doc)


def test_link_type_other_than_dedupe_only_is_refused_on_load():
    doc = default_settings()
    doc["splink"]["link_type"] = "link_only"
    with pytest.raises(SettingsError, match="link_type must be dedupe_only"):
        validate_settings(doc)


def test_one_parser_of_equality_blocking_rules():
    assert equality_terms("l.tk_dob = r.tk_dob AND l.a = r.b") == [("tk_dob", "tk_dob"), ("a", "b")]
    assert equality_terms('l."tk_dob" = r."tk_dob"') == [("tk_dob", "tk_dob")]
    assert equality_terms("l.tk_dob = r.tk_dob AND substr(l.x, 1, 2) = substr(r.x, 1, 2)") is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_guarded_clusters_read_only_linked_records_and_equal_the_merge_over_all(seed: int) -> None:
    """The clustering merges only the records on an edge or a label; every cluster id
    equals that of `guarded_merge` over every record (singletons keep their own id)."""
    import random

    from linkage.clustering import cluster_with_identifier_guard, guarded_merge

    rng = random.Random(seed)
    records = [(uid, rng.choice("abc"), rng.choice([None, 1, 2]), rng.choice([None, 5, 6]))
               for uid in range(1, 401)]
    edges = sorted({(a, b, round(rng.uniform(0.9, 1.0), 3)) for a, b in
                    (sorted(rng.sample(range(1, 301), 2)) for _ in range(350))},
                   key=lambda e: (-e[2], e[0], e[1]))
    must, cannot = [(rng.randint(301, 400), rng.randint(1, 300))], [(rng.randint(1, 300), 350)]
    con = duckdb.connect()
    con.execute("CREATE TABLE recs (unique_id BIGINT, source VARCHAR, tk_nhs BIGINT, tk_nino BIGINT)")
    con.executemany("INSERT INTO recs VALUES (?, ?, ?, ?)", records)
    con.execute("CREATE TABLE preds (unique_id_l BIGINT, unique_id_r BIGINT, match_probability DOUBLE)")
    con.executemany("INSERT INTO preds VALUES (?, ?, ?)", edges)
    table, refused = cluster_with_identifier_guard(con, "preds", "recs", 0.95, join_groups_threshold=0.97,
                                                   must_link=must, cannot_link=cannot)
    got = dict(con.execute(f"SELECT unique_id, cluster_id FROM {table}").fetchall())
    above = [e for e in edges if e[2] >= 0.95]
    expected, expected_refused = guarded_merge(records, above, False, 0.97, must, cannot)
    assert got == expected and refused == expected_refused
    assert refused > 0 and len(set(got.values())) < len(records) - 100


def _m_of(linker) -> list:
    return [lv._m_probability for cc in linker._settings_obj.comparisons
            for lv in cc._comparison_levels_excluding_null]


def test_per_rule_em_deferred_gives_the_m_train_gives(small):
    """Without the per-rule EM, train leaves the settings' m (floored) and returns the
    sessions to run later: run then, they give exactly the m `train` gives at once."""
    settings = default_settings()
    _con, at_once = _linker(small, settings)
    assert model.train(at_once, settings) is None
    _con, deferred = _linker(small, settings)
    train_m = model.train(deferred, settings, per_rule_em=False)
    assert callable(train_m)
    assert _m_of(deferred) != _m_of(at_once)  # not estimated yet
    train_m()
    assert _m_of(deferred) == _m_of(at_once)


def test_blocked_fit_runs_the_per_rule_em_only_when_refused(small, monkeypatch):
    """The fit from the settings' m stands when accepted; when refused, the per-rule EM
    runs and the fit is made again from its m, so the run falls back to the model `train`
    alone would have given. (150 people: the blocked pairs are nearly all matches, which
    is accepted; the refusal is forced here.)"""
    from linkage import blocked_em

    settings = default_settings()
    calls = []

    def fit() -> tuple[dict, list]:
        con, linker = _linker(small, settings)
        train_m = model.train(linker, settings, per_rule_em=False)
        blocked = linker.inference.compute_blocked_pairs_for_predict()
        _linker_out, info = blocked_em.fit(linker, con, blocked.physical_name, None,
                                           lambda: (calls.append(1), train_m()))
        return info, _m_of(linker)

    accepted, _m = fit()
    assert calls == [] and accepted["start_m"] == "settings" and accepted["applied"] is True
    assert accepted["value"] > 0.5  # nearly all the blocked pairs are one person's records
    real = blocked_em._fit_stratum
    monkeypatch.setattr(blocked_em, "_fit_stratum", lambda *a, **k: {**real(*a, **k), "problem": "forced"})
    refused, m_after = fit()
    assert calls == [1] and refused["applied"] is False
    assert refused["start_m"] == "per-rule EM (from the settings' m: forced)"
    _con, trained = _linker(small, settings)
    model.train(trained, settings)
    assert m_after == _m_of(trained)  # the fallback is the per-rule model, as before


def test_pairs_counted_when_choosing_rules_are_splinks_blocked_pairs(small):
    """The pairs the rule choice counted, kept as the run's blocked pairs, are exactly
    those Splink's predict blocks for the chosen rules, each with Splink's match_key."""
    from linkage.clk import add_band_columns

    settings = default_settings()
    con = duckdb.connect()
    words = words_for_bits(clk_bits_of(small))
    create_dice_macro(con, words)
    con.execute(f"CREATE TABLE records AS {stack_sql(small, words)}")
    chosen, info = settings_with_chosen_rules(
        con, "records", settings, lambda rules: add_band_columns(con, "records", rules, words),
        pairs_out="kept_pairs")
    rules = chosen["splink"]["blocking_rules_to_generate_predictions"]
    assert any("band_" in r for r in rules) and len(rules) > 5  # keys and bands both chosen
    ours = con.execute("SELECT match_key, join_key_l, join_key_r FROM kept_pairs ORDER BY ALL").fetchall()
    assert len(ours) == info["comparisons"] > 100
    linker = model.make_linker(con, chosen)
    theirs = linker.inference.compute_blocked_pairs_for_predict()
    assert ours == con.execute(
        f"SELECT match_key, join_key_l, join_key_r FROM {theirs.physical_name} ORDER BY ALL").fetchall()
    assert len({mk for mk, _l, _r in ours}) > 3


def test_exact_u_counts_from_the_blocked_vectors_equal_the_joins(small):
    """A rare level whose equal columns include a blocking rule's is counted from the
    blocked pairs' vectors: the same u as counting it by a join over all pairs."""
    settings = default_settings()
    _con, joined = _linker(small, settings)
    _prior_and_u(joined, settings)
    con, linker = _linker(small, settings)
    training = settings["training"]
    linker.training.estimate_probability_two_random_records_match(
        training["prior_rules"], recall=training["prior_recall"])
    vectors = comparison_vectors(linker, linker.inference.compute_blocked_pairs_for_predict())
    rules = [r.blocking_rule_sql for r in linker._settings_obj._blocking_rules_to_generate_predictions]
    assert "l.tk_nhs = r.tk_nhs" in rules  # the NHS number level is read from the vectors
    model.estimate_u(linker, training["u_max_pairs"], seed=1, blocked=(vectors.physical_name, rules))

    def u_of(lk) -> list:
        return [lv.u_probability for cc in lk._settings_obj.comparisons
                for lv in cc._comparison_levels_excluding_null]

    assert u_of(linker) == u_of(joined)


def _people_graph(seed: int) -> tuple[list[tuple], list[tuple], list, list]:
    """Records of people (one to six records each, NHS number and NINO mostly the
    person's, sometimes missing or another's), pairs within a person and a few across:
    most components can refuse nothing, some can."""
    import random

    rng = random.Random(seed)
    records, people = [], []
    for person in range(600):
        nhs, nino = 1000 + person, 5000 + person
        members = []
        for _ in range(rng.choice([1, 2, 2, 3, 3, 4, 5, 6])):
            uid = len(records) + 1
            records.append((uid, rng.choice("abcd"),
                            rng.choice([None, None, nhs, nhs, nhs, rng.randint(1000, 1600)]),
                            rng.choice([None, nino, nino, rng.randint(5000, 5600)])))
            members.append(uid)
        people.append(members)
    edges = set()
    for members in people:
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if rng.random() < 0.7:
                    edges.add((min(a, b), max(a, b), round(rng.uniform(0.9, 1.0), 2)))  # ties
    n = len(records)
    for _ in range(60):
        a, b = sorted(rng.sample(range(1, n + 1), 2))
        edges.add((a, b, round(rng.uniform(0.9, 0.97), 2)))
    ordered = sorted(edges, key=lambda e: (-e[2], e[0], e[1]))
    must = [tuple(rng.sample(range(1, n + 1), 2)) for _ in range(5)]
    cannot = [(e[0], e[1]) for e in rng.sample(ordered, 8)] + [tuple(rng.sample(range(1, n + 1), 2))]
    return records, ordered, must, cannot


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("one_per_source", [False, True])
@pytest.mark.parametrize("across_sources", [False, True])
@pytest.mark.parametrize("join_groups", [None, 0.95])
def test_merge_by_components_equals_the_one_pass_merge(seed: int, one_per_source: bool,
                                                       across_sources: bool, join_groups) -> None:
    """The component-wise clustering (plain unions where no merge can be refused,
    `guarded_merge` elsewhere) gives `guarded_merge`'s clusters, ids and refusals."""
    import pyarrow as pa

    from linkage.clustering import guarded_merge, merge_by_components

    records, edges, must, cannot = _people_graph(seed)
    for labels in (([], []), (must, cannot)):
        expected, expected_refused = guarded_merge(records, edges, one_per_source, join_groups,
                                                   *labels, across_sources)
        touched = sorted({u for e in edges for u in e[:2]} | {u for p in (*labels[0], *labels[1]) for u in p})
        table = pa.table({name: [r[i] for r in records if r[0] in set(touched)] for i, name in
                          enumerate(("unique_id", "source", "tk_nhs", "tk_nino"))},
                         schema=pa.schema([("unique_id", pa.int64()), ("source", pa.string()),
                                           ("tk_nhs", pa.int64()), ("tk_nino", pa.int64())]))
        stats: dict = {}
        got, refused = merge_by_components(
            table, *(np.array([e[i] for e in edges]) for i in range(3)), one_per_source,
            join_groups, *labels, across_sources, stats=stats)
        assert dict(zip(touched, got.tolist(), strict=True)) == {u: expected[u] for u in touched}
        assert refused == expected_refused > 0
        assert stats["fast"] > 50 and stats["merged"] > 5, stats  # both paths taken


@pytest.mark.parametrize("one_per_source", [False, True])
def test_merge_by_components_with_more_identifier_keys_than_a_word_holds(one_per_source: bool) -> None:
    """Forty sources, identifiers within source: 80-120 keys, past one uint64 of bits."""
    import random

    import pyarrow as pa

    from linkage.clustering import guarded_merge, merge_by_components

    records, edges, must, cannot = _people_graph(1)
    rng = random.Random(1)
    records = [(uid, f"s{rng.randrange(40)}", nhs, nino) for uid, _s, nhs, nino in records]
    expected, expected_refused = guarded_merge(records, edges, one_per_source, 0.95, must, cannot)
    touched = sorted({u for e in edges for u in e[:2]} | {u for p in (*must, *cannot) for u in p})
    table = pa.table({name: [r[i] for r in records if r[0] in set(touched)] for i, name in
                      enumerate(("unique_id", "source", "tk_nhs", "tk_nino"))})
    stats: dict = {}
    got, refused = merge_by_components(table, *(np.array([e[i] for e in edges]) for i in range(3)),
                                       one_per_source, 0.95, must, cannot, stats=stats)
    assert dict(zip(touched, got.tolist(), strict=True)) == {u: expected[u] for u in touched}
    assert refused == expected_refused and stats["fast"] > 50
