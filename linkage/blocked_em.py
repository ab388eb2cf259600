"""m, u and the share of matches re-estimated on the pairs the run will score.

Why: the default (v2) encoding compares fields only through salted filters and match keys,
so its comparisons are not independent over random pairs. A name level read from a filter
salted by the date of birth already says "same date of birth", and the date-of-birth
comparison would count that again; u from random pairs (the product of per-comparison
rarities) then makes "same given name and same date of birth" look like two rare
coincidences, and distinct people who share a common given name and a birthday link
(measured: 1,428 such false links among 50,000 synthetic people).

What: a two-class latent model fitted by expectation maximisation on the blocked pairs
themselves (the pairs `predict` will score), with m, u *and* the share of matches free,
starting from the trained model. Within the blocked pairs, u is the distribution of the
comparison levels among the blocked non-matches, which already agree on a match key: the
dependence that random-pair u ignores is what u now measures. Scoring the blocked pairs
with these parameters gives P(match | levels, blocked), so the prior of the model becomes
the share of matches among the blocked pairs and is not re-calibrated afterwards.

This is the Fellegi-Sunter EM used within blocks (Winkler 1988; Jaro 1989; fastLink, Enamorado,
Fifield and Imai 2019), on agreement-pattern counts in numpy. Null levels weigh 1 in both classes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from splink import DuckDBAPI, Linker

from linkage.clk import band_columns
from linkage.em import RECORDS_TABLE, pattern_counts, vector_pattern_counts
from linkage.model import linker_for_trained_model
from linkage.settings import equality_terms

MAX_ITERATIONS = 200
TOLERANCE = 1e-7
# Pseudo-pairs per level added to each class, spread over the levels as the starting
# model spreads that class (m0 for matches, u0 for non-matches): no level gets m or u of
# exactly 0, and a class that holds almost no pairs keeps the starting model's shape. A
# uniform spread made a near-empty non-match class look uniform, so it took in the true
# matches with rare patterns (FEBRL3, whose blocked pairs are 99.9% matches: 7% of them
# became "non-matches", recall 0.928; with this 0.956, synthetic sources unchanged).
PSEUDO_COUNT = 0.5
# The match class must hold at least this many expected pairs, or m would be nothing but
# the pseudo-counts, and the trained model is kept instead. A non-match class this small is
# accepted: the blocked pairs are then nearly all matches (deduplication data with tight
# keys), u keeps the starting model's shape through the pseudo-counts, and the share of
# matches is what the data say. (Refusing it put FEBRL2 back on the random-pair prior:
# F1 0.970 against 0.991, its blocked pairs being 99.4% matches.)
MIN_CLASS_PAIRS = 25

# A free fit of the band stratum is taken as the match split only when the average pair of
# its match class carries at least this match weight (bits) over the comparisons these pairs
# show: from even odds, probability 0.95 (log2 19). Records of one person differ from the
# rest in several fields; a class set apart by one field is a household or a street
# (300,000 synthetic people: 0.45 bits, set apart by the address alone; FEBRL4: 11 bits).
MIN_MATCH_CLASS_BITS = math.log2(19.0)


def fit(linker: Linker, con: Any, blocked_table: str, vectors_table: str | None = None,
        train_m: Callable[[], None] | None = None,
        band_m: str = "keyed",
        identifiers: list[str] | None = None) -> tuple[Linker, dict[str, Any]]:
    """Re-estimate every comparison level's m and u, and the prior, on the blocked pairs
    in `blocked_table` (join_key_l, join_key_r, match_key). Returns the linker to score
    with (this one updated in place, or a stratified one; see `stratified_model`) and what
    was done, for summary.json. `vectors_table` (linkage.predict.comparison_vectors of
    these pairs), when given, supplies the patterns without computing any level again.

    `train_m`, when given, estimates the linker's m by the per-rule EM sessions
    (linkage.model.train), which were not run: the fit then starts from the settings' m
    (measured: the same fit as from the per-rule m, bench/RESULTS-linkage.md), and only if
    it is refused are they run, and the fit made again from them, as without `train_m`.

    The pairs that only a filter band blocks (linkage.clk) are fitted apart from those a
    match key or an identifier blocks: they are mostly neighbours and household members
    whose levels are unlike the keyed non-matches, and pooling them changes the keyed
    non-match class (measured: "same given name and birthday" pairs linked again). When
    their own fit is refused, the band rules are dropped from the run and their pairs are
    not scored; the keyed fit then stands alone, as in a run without bands. Fewer than
    `MIN_CLASS_PAIRS` of them cannot be fitted apart, and are scored with the keyed fit.

    `identifiers` (`training.identifier_comparisons`) name the comparisons whose "all
    other" level marks a pair as a non-match in every fit: see `differing_identifiers`."""
    settings_obj = linker._settings_obj
    comparisons = list(settings_obj.comparisons)
    rules = [r.blocking_rule_sql for r in settings_obj._blocking_rules_to_generate_predictions]
    band_keys = [str(i) for i, rule in enumerate(rules) if band_columns([rule])]
    in_bands = f"b.match_key IN ({', '.join(repr(k) for k in band_keys)})" if band_keys else "false"
    def patterns_where(where: str) -> tuple[np.ndarray, np.ndarray]:
        if vectors_table is not None:
            return vector_pattern_counts(con, comparisons, f"{vectors_table} b WHERE {where}")
        pairs = (f"{blocked_table} b JOIN {RECORDS_TABLE} l ON l.unique_id = b.join_key_l "
                 f"JOIN {RECORDS_TABLE} r ON r.unique_id = b.join_key_r")
        return pattern_counts(con, comparisons, f"{pairs} WHERE {where}")

    tables = [blocked_table] + ([vectors_table] if vectors_table else [])
    patterns, counts = patterns_where(f"NOT ({in_bands})")
    if not len(counts):
        if train_m is not None:
            train_m()
        _drop_band_rules(linker, con, tables, band_keys)
        return linker, {"blocked_pairs": 0, "iterations": 0, "applied": False,
                        "rejected_because": "no blocked pair"}
    total = float(counts.sum())

    levels = [{lv.comparison_vector_value: lv for lv in cc._comparison_levels_excluding_null}
              for cc in comparisons]
    differ = differing_identifiers(comparisons, identifiers or [])
    # The trained model's prior moved to the blocked pairs' scale.
    prior0 = float(settings_obj._probability_two_random_records_match)
    n = con.execute(f"SELECT count(*) FROM {RECORDS_TABLE}").fetchall()[0][0]
    share0 = min(max(prior0 * n * (n - 1) / 2.0 / total, 0.01), 0.99)

    def fit_keyed() -> dict[str, Any]:
        m0 = [{g: _probability(lv.m_probability) for g, lv in lv_by_g.items()} for lv_by_g in levels]
        u0 = [{g: _probability(lv.u_probability) for g, lv in lv_by_g.items()} for lv_by_g in levels]
        return _fit_stratum(patterns, counts, m0, u0, share0, len(levels), nonmatch=differ)

    keyed = fit_keyed()
    start_m = "per-rule EM" if train_m is None else "settings"
    if keyed["problem"] and train_m is not None:
        train_m()
        keyed, start_m = fit_keyed(), f"per-rule EM (from the settings' m: {keyed['problem']})"
    info = {"blocked_pairs": int(total), "patterns": len(counts), "iterations": keyed["iterations"],
            "value": keyed["share"], "start": share0, "start_m": start_m}
    if keyed["problem"]:
        # EM found another split of the blocked pairs (e.g. households against the rest):
        # keep the trained model, and say so in summary.json.
        _drop_band_rules(linker, con, tables, band_keys)
        return linker, {**info, "applied": False, "rejected_because": keyed["problem"]}

    # Set, not appended to the trained values: Splink's median over training sessions
    # would mix these with estimates made under random-pair u.
    for j, lv_by_g in enumerate(levels):
        for g, level in lv_by_g.items():
            level.m_probability, level.u_probability = keyed["m"][j][g], keyed["u"][j][g]
    settings_obj._probability_two_random_records_match = keyed["share"]
    info = {**info, "applied": True,
            "estimated_from": "EM on the blocked pairs (m, u and the share of matches)"}
    if not band_keys:
        return linker, info

    # The stratum is fitted on the pairs a whole 128-bit band finds; the pairs only a 64-bit
    # band finds are scored with that fit (fitted with them, EM flips modes on FEBRL3).
    fit_keys = [k for k in band_keys if "band64_" not in rules[int(k)]]
    in_fit = f"b.match_key IN ({', '.join(repr(k) for k in fit_keys)})" if fit_keys else in_bands
    band_patterns, band_counts = patterns_where(in_fit)
    bands: dict[str, Any] = {"rules": [rules[int(k)] for k in band_keys], "blocked_pairs": int(band_counts.sum())}
    if in_fit != in_bands:
        bands["blocked_pairs_64_bit_only"] = int(patterns_where(
            f"({in_bands}) AND NOT ({in_fit})")[1].sum())
    if 0 < band_counts.sum() < MIN_CLASS_PAIRS:
        # Too few to fit on their own: scored with the keyed fit (both strata then weigh a
        # level alike). FEBRL1: 14 such pairs, same address and postcode, names or date
        # changed; dropping them lost those people.
        band, problem = keyed, None
        bands.update({"m": "keyed", "u": "keyed", "value": keyed["share"],
                      "fitted": f"fewer than {MIN_CLASS_PAIRS} pairs: scored with the keyed fit"})
    elif len(band_counts):
        # Start from the keyed fit's view of these pairs.
        start = fit_patterns(band_patterns, band_counts, keyed["m"], keyed["u"], 0.5, max_iterations=0)
        band, how = fit_band_stratum(band_patterns, band_counts, keyed["m"], keyed["u"],
                                     min(max(start[2], 0.01), 0.5), len(levels), band_m, differ)
        bands.update({**how, "iterations": band["iterations"], "value": band["share"]})
        problem = band["problem"]
    else:
        problem = "no pair blocked only by a band"
    if problem:
        _drop_band_rules(linker, con, tables, band_keys)
        return linker, {**info, "filter_bands": {**bands, "applied": False, "rejected_because": problem,
                                                 "dropped": "band rules left out of this run"}}
    key_rules = [r for i, r in enumerate(rules) if str(i) not in band_keys]
    model = stratified_model(linker.misc.save_model_to_json(), comparisons, key_rules,
                             (keyed, total), (band, float(band_counts.sum())))
    stratified = linker_for_trained_model(DuckDBAPI(connection=con), RECORDS_TABLE, model, "duckdb")
    # Predict scores the pairs blocked for this fit, not a second blocking.
    stratified._intermediate_table_cache = linker._intermediate_table_cache
    restratified = False
    if vectors_table is not None and max(int(k) for k in band_keys) < len(rules) and \
            all(str(i) in band_keys for i in range(min(int(k) for k in band_keys), len(rules))):
        # Bands after every key: a pair is "found by a match key" exactly when its
        # match_key is not a band's, so its stratified levels follow from its levels.
        restratify_vectors(con, vectors_table, comparisons, in_bands)
        restratified = True
    return stratified, {**info, "value": model["probability_two_random_records_match"],
                        "value_keyed": keyed["share"],
                        "filter_bands": {**bands, "applied": True},
                        "vectors_restratified": restratified}


def restratify_vectors(con: Any, vectors_table: str, comparisons: list, in_bands: str) -> None:
    """Turn comparison vectors of the trained model into those of its `stratified_model`:
    there each comparison of L levels (besides null) has its L "found by a match key"
    levels first, then the L "found only by a filter band" ones, so a level of gamma g
    becomes L + g for a pair a key found and stays g otherwise (null stays -1); and the
    `blocking` comparison is 1 for a key's pair, 0 for a band's."""
    b, in_bands = vectors_table, in_bands.replace("b.match_key", "match_key")
    sets = []
    for cc in comparisons:
        gamma, levels = cc._gamma_column_name, len(cc._comparison_levels_excluding_null)
        sets.append(f"{gamma} = CASE WHEN {gamma} >= 0 AND NOT ({in_bands}) THEN {gamma} + {levels} "
                    f"ELSE {gamma} END")
    con.execute(f"UPDATE {b} SET {', '.join(sets)}")
    con.execute(f"ALTER TABLE {b} ADD COLUMN gamma_blocking INTEGER")
    con.execute(f"UPDATE {b} SET gamma_blocking = CASE WHEN {in_bands} THEN 0 ELSE 1 END")


def fit_band_stratum(patterns: np.ndarray, counts: np.ndarray, m0: Levels, u0: Levels,
                     share0: float, comparisons: int, band_m: str,
                     nonmatch: dict[int, int] | None = None) -> tuple[dict[str, Any], dict]:
    """The band stratum's fit (`_fit_stratum`) under `training.band_stratum_m`, and how it
    was made, for summary.json. "auto": m fitted freely unless that fit is refused or its
    match class is set apart by too little (`MIN_MATCH_CLASS_BITS`); then m stays the keyed
    fit's (`m0`) and only u and the share are fitted."""
    if band_m == "keyed":
        return _fit_stratum(patterns, counts, m0, u0, share0, comparisons, bands=True,
                            fit_m=False, nonmatch=nonmatch), {"m": "keyed"}
    free = _fit_stratum(patterns, counts, m0, u0, share0, comparisons, bands=True, fit_m=True,
                        nonmatch=nonmatch)
    how = {"m": "fitted", "separation_bits": round(free["separation_bits"], 3)}
    if band_m == "fitted" or not (free["problem"] or free["separation_bits"] < MIN_MATCH_CLASS_BITS):
        return free, how
    how["fitted_m_refused"] = free["problem"] or (
        f"its match class carries {free['separation_bits']:.2f} bits, under {MIN_MATCH_CLASS_BITS:.2f}")
    how["m"] = "keyed"
    return _fit_stratum(patterns, counts, m0, u0, share0, comparisons, bands=True, fit_m=False,
                        nonmatch=nonmatch), how


def _fit_stratum(patterns: np.ndarray, counts: np.ndarray, m0: Levels, u0: Levels, share0: float,
                 comparisons: int, bands: bool = False, fit_m: bool = True,
                 nonmatch: dict[int, int] | None = None) -> dict[str, Any]:
    """fit_patterns, with the reason (or None) the fit cannot be the match split."""
    # The band stratum (`training.band_stratum_m`, `fit_band_stratum`): with `fit_m` false m
    # stays the keyed fit's and only u (these pairs' non-matches) and the share of matches
    # are fitted. Free, EM there calls "match" whatever splits the band pairs best: the
    # members of one household at 300,000 synthetic people (42% of 193,883 band-only pairs,
    # set apart by the address alone, 0.46 bits; within-source precision 0.89), the true
    # matches with typos in FEBRL (FEBRL4 F1 0.986 against 0.967 keyed, 11 bits).
    m, u, share, iterations = fit_patterns(patterns, counts, m0, u0, share0, fit_m=fit_m,
                                           nonmatch=nonmatch)
    total = float(counts.sum())
    observed = [j for j in range(comparisons) if (patterns[:, j] >= 0).any()]
    if bands:
        shown = [sorted({int(g) for g in patterns[:, j] if g >= 0}) for j in range(comparisons)]
        problem = implausible_in_bands(m, u, [g[-1] if len(g) > 1 else None for g in shown])
    else:
        problem = implausible(m, u, [int((patterns[:, j] >= 0).sum()) for j in range(comparisons)])
    if share * total < MIN_CLASS_PAIRS:
        problem = (f"the match class holds fewer than {MIN_CLASS_PAIRS} of the {int(total)} blocked pairs "
                   f"(share of matches {share:.6f})")
    return {"m": m, "u": u, "share": share, "iterations": iterations, "problem": problem,
            "separation_bits": separation_bits(m, u, observed)}


def separation_bits(m: Levels, u: Levels, comparisons: list[int]) -> float:
    """The match weight (bits) the average pair of the match class carries over the given
    comparisons: the Kullback-Leibler divergence of m from u, summed."""
    return sum(m[j][g] * math.log2(m[j][g] / u[j][g])
               for j in comparisons for g in m[j] if m[j][g] > 0 and u[j][g] > 0)


def _drop_band_rules(linker: Linker, con: Any, tables: list[str], band_keys: list[str]) -> None:
    """Leave the band rules (the last rules) and their pairs (in each of `tables`) out of
    this run."""
    if not band_keys:
        return
    for table in tables:
        con.execute(f"DELETE FROM {table} WHERE match_key IN ({', '.join(repr(k) for k in band_keys)})")
    brs = linker._settings_obj._blocking_rules_to_generate_predictions
    linker._settings_obj._blocking_rules_to_generate_predictions = [
        br for i, br in enumerate(brs) if str(i) not in band_keys]


def kept_rules(linker: Linker) -> list[str]:
    """The blocking rules the linker scores with (after a fit may have dropped the bands)."""
    return [r.blocking_rule_sql for r in linker._settings_obj._blocking_rules_to_generate_predictions]


KEYED = " (match key)"
BANDED = " (filter band only)"


def stratified_model(trained: dict[str, Any], comparisons: list, key_rules: list[str],
                     keyed: tuple[dict[str, Any], float], band: tuple[dict[str, Any], float]) -> dict[str, Any]:
    """The trained model (Splink's JSON) as two strata in one Fellegi-Sunter model that
    Splink scores as it is: every level is split into "found by a match key" and "found
    only by a filter band", each with that stratum's m and u (which sum to 1 within the
    stratum), and one `blocking` comparison carries the strata's own shares of matches
    (its m and u are the share of each class's expected pairs in each stratum). The weight
    of a pair is then that of its stratum's own fit, and the waterfall shows which one."""
    (k_fit, k_total), (b_fit, b_total) = keyed, band
    k_match, b_match = k_fit["share"] * k_total, b_fit["share"] * b_total
    k_non, b_non = k_total - k_match, b_total - b_match
    found_by_key = " OR ".join(
        "(" + " AND ".join(f"{a}_l = {b}_r" for a, b in equality_terms(rule) or []) + ")" for rule in key_rules)
    model = copy.deepcopy(trained)
    for doc, cc in zip(model["comparisons"], comparisons, strict=True):
        nulls, keyed_levels, band_levels = [], [], []
        for level_doc, level in zip(doc["comparison_levels"], cc.comparison_levels, strict=True):
            if level_doc.get("is_null_level"):
                nulls.append(level_doc)
                continue
            j = comparisons.index(cc)
            g = level.comparison_vector_value
            cond = level_doc["sql_condition"]
            label = level_doc.get("label_for_charts", cond)
            keyed_levels.append({**level_doc, "label_for_charts": label + KEYED,
                                 "sql_condition": f"({found_by_key})" if cond.strip().upper() == "ELSE"
                                 else f"({cond}) AND ({found_by_key})",
                                 "m_probability": k_fit["m"][j][g], "u_probability": k_fit["u"][j][g]})
            band_levels.append({**level_doc, "label_for_charts": label + BANDED,
                                "m_probability": b_fit["m"][j][g], "u_probability": b_fit["u"][j][g]})
        doc["comparison_levels"] = nulls + keyed_levels + band_levels
    model["comparisons"].append({
        "output_column_name": "blocking",
        "comparison_description": "which rules blocked the pair: a match key or identifier, or only a filter band",
        "comparison_levels": [
            {"sql_condition": f"({found_by_key})", "label_for_charts": "found by a match key",
             "m_probability": k_match / (k_match + b_match), "u_probability": k_non / (k_non + b_non)},
            {"sql_condition": "ELSE", "label_for_charts": "found only by a filter band",
             "m_probability": b_match / (k_match + b_match), "u_probability": b_non / (k_non + b_non)},
        ],
    })
    model["probability_two_random_records_match"] = (k_match + b_match) / (k_total + b_total)
    return model


Levels = list[dict[int, float]]


def differing_identifiers(comparisons: list, names: list[str]) -> dict[int, int]:
    """comparison index -> its "all other" gamma (both values present, different), for each
    comparison named in `names`: a pattern showing one of these levels is held in the
    non-match class while EM fits (`fit_patterns`).

    Why: EM splits the blocked pairs along whatever divides them best. At 10M synthetic
    records (7 rules under the budget, all on names) that was "same phonetic names but not
    the same spelling" against the rest: namesakes fell in the match class, which then read
    u("both names exact") = 0 and m("NHS numbers differ") = 0.068, and within-source
    precision fell to 0.977. Two records of one person carry two NHS numbers (or NINOs)
    only by a recording error, so pairs whose numbers differ are a sample of the blocked
    non-matches: held there, they show the non-match class what namesakes look like."""
    levels: dict[int, int] = {}
    for j, cc in enumerate(comparisons):
        other = [lv for lv in cc._comparison_levels_excluding_null if lv._is_else_level]
        if cc.output_column_name in names and other:
            levels[j] = other[0].comparison_vector_value
    return levels


def fit_patterns(patterns: np.ndarray, counts: np.ndarray, m0: Levels, u0: Levels,
                 share0: float, max_iterations: int = MAX_ITERATIONS,
                 fit_m: bool = True, nonmatch: dict[int, int] | None = None) -> tuple[Levels, Levels, float, int]:
    """Two-class EM over agreement patterns (rows of gamma values, -1 = null; `counts`
    pairs each), from m0, u0 and share0. Returns m, u (per comparison: gamma -> share among
    its non-null levels), the share of matches and the iterations run. With
    `max_iterations` 0: m0, u0 and the expected share of matches under them. With `fit_m`
    False, m stays m0: only u and the share are fitted. A pattern at any level of `nonmatch`
    (comparison index -> gamma; `differing_identifiers`) counts as a non-match throughout."""
    total = float(counts.sum())
    seen = [{g: patterns[:, j] == g for g in m0_j} for j, m0_j in enumerate(m0)]
    log_odds = np.full(len(counts), math.log(share0 / (1.0 - share0)))
    for j, m0_j in enumerate(m0):
        for g in m0_j:
            log_odds[seen[j][g]] += math.log(m0_j[g] / u0[j][g])
    held = np.zeros(len(counts), dtype=bool)
    for j, g in (nonmatch or {}).items():
        held |= patterns[:, j] == g
    prob = np.where(held, 0.0, _sigmoid(log_odds))
    share, iterations = float((prob * counts).sum() / total), 0
    m_est, u_est = m0, u0
    while iterations < max_iterations:
        iterations += 1
        matched, unmatched = prob * counts, (1.0 - prob) * counts
        # Smoothed like the levels: 5,000 blocked pairs all in one class say the share is
        # near 1, not 1 - 1e-9 (a prior of 30 bits that no disagreement could outweigh).
        share = (float(matched.sum()) + PSEUDO_COUNT) / (total + 2.0 * PSEUDO_COUNT)
        if fit_m:
            m_est = [_level_shares(seen_j, matched, m0[j]) for j, seen_j in enumerate(seen)]
        u_est = [_level_shares(seen_j, unmatched, u0[j]) for j, seen_j in enumerate(seen)]
        log_odds = np.full(len(counts), math.log(share / (1.0 - share)))
        for j, seen_j in enumerate(seen):
            for g in seen_j:
                log_odds[seen_j[g]] += math.log(m_est[j][g] / u_est[j][g])
        new_prob = np.where(held, 0.0, _sigmoid(log_odds))
        change = float(np.max(np.abs(new_prob - prob)))
        prob = new_prob
        if change < TOLERANCE:
            break
    return m_est, u_est, share, iterations


def implausible(m: Levels, u: Levels, observed: list[int]) -> str | None:
    """Why a fit cannot be the match / non-match split, or None. In every comparison that
    some pattern shows non-null (`observed`: patterns per comparison), the strongest level
    (highest gamma) must favour a match. ("All other" may favour a match here: the blocked
    non-matches share a match key, so they often agree where true matches have typos.)"""
    for j, (m_j, u_j) in enumerate(zip(m, u, strict=True)):
        if not observed[j]:
            continue
        top = max(m_j)
        if len(m_j) > 1 and m_j[top] <= u_j[top]:
            return f"comparison {j}: its strongest level favours a non-match"
    return None


def implausible_in_bands(m: Levels, u: Levels, top_shown: list[int | None]) -> str | None:
    """`implausible` for the pairs only a filter band blocks. They were chosen for agreeing
    on one filter (an address, or a name within a postcode), and the levels a match key
    implies are absent from them, so each comparison is judged by the strongest level
    these pairs show (`top_shown`; None where they show fewer than two levels): it must
    favour a match in at least half of those comparisons, and in at least one. (Neighbours
    agree on the address more often than true matches with typos do, so one comparison
    may go the other way.)"""
    judged = [(j, g) for j, g in enumerate(top_shown) if g is not None]
    favour = [j for j, g in judged if m[j][g] > u[j][g]]
    if not favour or 2 * len(favour) < len(judged):
        return (f"the strongest level these pairs show favours a match in {len(favour)} of "
                f"{len(judged)} comparisons")
    return None


def _level_shares(seen: dict[int, np.ndarray], weights: np.ndarray, start: dict[int, float]) -> dict[int, float]:
    """Each level's share of the class's expected pairs among non-null levels, smoothed
    towards the starting model's shares (`start`)."""
    mass = PSEUDO_COUNT * len(seen)
    norm = sum(start.values())
    by_g = {g: float(weights[mask].sum()) + mass * start[g] / norm for g, mask in seen.items()}
    denom = sum(by_g.values())
    return {g: v / denom for g, v in by_g.items()}


def _probability(value: Any) -> float:
    """A level's m or u as a number in (0, 1) ("not observed" and None become small)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = 1e-6
    return min(max(v, 1e-12), 1.0 - 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
