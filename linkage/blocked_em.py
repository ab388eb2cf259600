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

import math
from typing import Any

import numpy as np
from splink import Linker

from linkage.em import RECORDS_TABLE, pattern_counts

MAX_ITERATIONS = 200
TOLERANCE = 1e-7
# Added to each level's expected count in each class: no level gets m or u of exactly 0
# (a level no blocked pair shows would otherwise give an infinite weight).
PSEUDO_COUNT = 0.5
# Each class must hold at least this many expected pairs; with fewer (a small run whose
# blocked pairs are nearly all one person each) EM puts every pair in one class and u or m
# is nothing but the pseudo-counts, so the trained model is kept instead.
MIN_CLASS_PAIRS = 25


def fit(linker: Linker, con: Any, blocked_table: str) -> dict[str, Any]:
    """Re-estimate every comparison level's m and u, and the prior, on the blocked pairs
    in `blocked_table` (join_key_l, join_key_r); update the linker in place."""
    settings_obj = linker._settings_obj
    comparisons = list(settings_obj.comparisons)
    patterns, counts = pattern_counts(
        con, comparisons,
        f"{blocked_table} b JOIN {RECORDS_TABLE} l ON l.unique_id = b.join_key_l "
        f"JOIN {RECORDS_TABLE} r ON r.unique_id = b.join_key_r")
    if not len(counts):
        return {"blocked_pairs": 0, "iterations": 0, "applied": False, "rejected_because": "no blocked pair"}
    total = float(counts.sum())

    levels = [{lv.comparison_vector_value: lv for lv in cc._comparison_levels_excluding_null}
              for cc in comparisons]
    m0 = [{g: _probability(lv.m_probability) for g, lv in lv_by_g.items()} for lv_by_g in levels]
    u0 = [{g: _probability(lv.u_probability) for g, lv in lv_by_g.items()} for lv_by_g in levels]
    # The trained model's prior moved to the blocked pairs' scale.
    prior0 = float(settings_obj._probability_two_random_records_match)
    n = con.execute(f"SELECT count(*) FROM {RECORDS_TABLE}").fetchall()[0][0]
    share0 = min(max(prior0 * n * (n - 1) / 2.0 / total, 0.01), 0.99)
    m_est, u_est, share, iterations = fit_patterns(patterns, counts, m0, u0, share0)
    info = {"blocked_pairs": int(total), "patterns": len(counts), "iterations": iterations,
            "value": share, "start": share0}
    observed = [int((patterns[:, j] >= 0).sum()) for j in range(len(levels))]
    problem = implausible(m_est, u_est, observed)
    if min(share, 1.0 - share) * total < MIN_CLASS_PAIRS:
        problem = (f"one class holds fewer than {MIN_CLASS_PAIRS} of the {int(total)} blocked pairs "
                   f"(share of matches {share:.6f})")
    if problem:
        # EM found another split of the blocked pairs (e.g. households against the rest):
        # keep the trained model, and say so in summary.json.
        return {**info, "applied": False, "rejected_because": problem}

    # Set, not appended to the trained values: Splink's median over training sessions
    # would mix these with estimates made under random-pair u.
    for j, lv_by_g in enumerate(levels):
        for g, level in lv_by_g.items():
            level.m_probability, level.u_probability = m_est[j][g], u_est[j][g]
    settings_obj._probability_two_random_records_match = share
    return {**info, "applied": True,
            "estimated_from": "EM on the blocked pairs (m, u and the share of matches)"}


Levels = list[dict[int, float]]


def fit_patterns(patterns: np.ndarray, counts: np.ndarray, m0: Levels, u0: Levels,
                 share0: float) -> tuple[Levels, Levels, float, int]:
    """Two-class EM over agreement patterns (rows of gamma values, -1 = null; `counts`
    pairs each), from m0, u0 and share0. Returns m, u (per comparison: gamma -> share among
    its non-null levels), the share of matches and the iterations run."""
    total = float(counts.sum())
    seen = [{g: patterns[:, j] == g for g in m0_j} for j, m0_j in enumerate(m0)]
    log_odds = np.full(len(counts), math.log(share0 / (1.0 - share0)))
    for j, m0_j in enumerate(m0):
        for g in m0_j:
            log_odds[seen[j][g]] += math.log(m0_j[g] / u0[j][g])
    prob = _sigmoid(log_odds)
    share, iterations = share0, 0
    m_est, u_est = m0, u0
    while iterations < MAX_ITERATIONS:
        iterations += 1
        matched, unmatched = prob * counts, (1.0 - prob) * counts
        share = min(max(float(matched.sum() / total), 1e-9), 1.0 - 1e-9)
        m_est = [_level_shares(seen_j, matched) for seen_j in seen]
        u_est = [_level_shares(seen_j, unmatched) for seen_j in seen]
        log_odds = np.full(len(counts), math.log(share / (1.0 - share)))
        for j, seen_j in enumerate(seen):
            for g in seen_j:
                log_odds[seen_j[g]] += math.log(m_est[j][g] / u_est[j][g])
        new_prob = _sigmoid(log_odds)
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


def _level_shares(seen: dict[int, np.ndarray], weights: np.ndarray) -> dict[int, float]:
    """Each level's share of the class's expected pairs among non-null levels (smoothed)."""
    by_g = {g: float(weights[mask].sum()) + PSEUDO_COUNT for g, mask in seen.items()}
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
