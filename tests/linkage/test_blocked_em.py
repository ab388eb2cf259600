"""EM on the blocked pairs (linkage.blocked_em): the two-class fit recovers known m, u and
share from agreement-pattern counts, and a fit whose strongest level favours a
non-match is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from linkage.blocked_em import fit_patterns, implausible


def _patterns(m: list[dict[int, float]], u: list[dict[int, float]], share: float, pairs: int):
    """Expected pattern counts of `pairs` blocked pairs under conditional independence."""
    rows, counts = [], []
    for combo in itertools.product(*[sorted(m_j) for m_j in m]):
        pm = np.prod([m[j][g] for j, g in enumerate(combo)])
        pu = np.prod([u[j][g] for j, g in enumerate(combo)])
        rows.append(combo)
        counts.append(pairs * (share * pm + (1 - share) * pu))
    return np.array(rows, dtype=np.int64), np.array(counts)


def test_fit_recovers_the_parameters_it_was_given():
    m = [{2: 0.7, 1: 0.2, 0: 0.1}, {1: 0.85, 0: 0.15}, {2: 0.6, 1: 0.3, 0: 0.1}]
    u = [{2: 0.05, 1: 0.15, 0: 0.8}, {1: 0.3, 0: 0.7}, {2: 0.1, 1: 0.2, 0: 0.7}]
    patterns, counts = _patterns(m, u, 0.4, 1_000_000)
    # Start from a poor guess: flat-ish m and u, share 0.5.
    m0 = [{g: (0.5 if g == max(mj) else 0.5 / (len(mj) - 1)) for g in mj} for mj in m]
    u0 = [{g: 1.0 / len(uj) for g in uj} for uj in u]
    m_est, u_est, share, _ = fit_patterns(patterns, counts, m0, u0, 0.5)
    assert share == pytest.approx(0.4, abs=1e-3)
    for j in range(3):
        for g in m[j]:
            assert m_est[j][g] == pytest.approx(m[j][g], abs=2e-3)
            assert u_est[j][g] == pytest.approx(u[j][g], abs=2e-3)
    assert implausible(m_est, u_est, [1, 1, 1]) is None


def test_a_split_that_reverses_a_comparison_is_refused():
    m = [{1: 0.2, 0: 0.8}, {1: 0.9, 0: 0.1}]
    u = [{1: 0.6, 0: 0.4}, {1: 0.1, 0: 0.9}]
    assert "comparison 0" in implausible(m, u, [5, 5])
    # A comparison no pattern shows (all null, e.g. no NHS numbers) is not judged.
    assert implausible(m, u, [0, 5]) is None


def test_pairs_whose_identifiers_differ_hold_the_split_to_the_person():
    """Namesakes (same names, mostly born the same day, other addresses) among the blocked
    pairs: free EM, started from random-pair u, takes them for matches and reads "NHS
    numbers differ" as common among matches. Held as non-matches where their identifiers
    differ, they teach the non-match class what namesakes look like."""
    rows: dict[tuple, float] = {}

    def people(share, ids, names, dob, address):
        for (i, pi), (n, pn), (d, pd), (a, pa) in itertools.product(
                ids.items(), names.items(), dob.items(), address.items()):
            rows[(i, n, d, a)] = rows.get((i, n, d, a), 0.0) + 100_000 * share * pi * pn * pd * pa

    # comparisons: identifier (1 same, 0 differ, -1 null), names, date of birth, address
    people(0.5, {-1: 0.7, 1: 0.3}, {1: 0.9, 0: 0.1}, {1: 0.98, 0: 0.02}, {1: 0.8, 0: 0.2})  # one person
    people(0.2, {-1: 0.7, 0: 0.3}, {1: 1.0}, {1: 0.9, 0: 0.1}, {1: 0.05, 0: 0.95})  # namesakes
    people(0.3, {-1: 0.7, 0: 0.3}, {0: 1.0}, {1: 0.1, 0: 0.9}, {1: 0.3, 0: 0.7})  # neighbours
    patterns, counts = np.array(list(rows), dtype=np.int64), np.array(list(rows.values()))
    m0 = [{1: 0.99, 0: 0.01}, {1: 0.9, 0: 0.1}, {1: 0.95, 0: 0.05}, {1: 0.8, 0: 0.2}]
    u0 = [{1: 1e-6, 0: 1 - 1e-6}, {1: 2e-6, 0: 1 - 2e-6}, {1: 3e-5, 0: 1 - 3e-5}, {1: 1e-4, 0: 1 - 1e-4}]

    def namesake_odds(m, u, share):  # no identifier, same names and birthday, other address
        return share / (1 - share) * np.prod([m[j][g] / u[j][g] for j, g in ((1, 1), (2, 1), (3, 0))])

    m, u, share, _ = fit_patterns(patterns, counts, m0, u0, 0.5)
    assert m[0][0] > 0.2 and share > 0.65  # the namesakes joined the match class
    free_odds = namesake_odds(m, u, share)
    m, u, share, _ = fit_patterns(patterns, counts, m0, u0, 0.5, nonmatch={0: 0})
    assert m[0][0] < 1e-4 and abs(share - 0.5) < 0.1
    assert u[1][1] > 0.2  # "same names" is no longer a near-certain sign of a match
    assert namesake_odds(m, u, share) < free_odds / 20


def test_blocked_pairs_that_are_nearly_all_matches_are_fitted_not_refused():
    """Deduplication data with tight keys (FEBRL2: 99.4% of the blocked pairs are matches):
    the fit stands, with the share of matches the data show, and u near the starting
    model's through the pseudo-counts. A fit whose match class is that small is refused:
    m would be nothing but the pseudo-counts."""
    from linkage.blocked_em import MIN_CLASS_PAIRS, _fit_stratum

    m = [{1: 0.95, 0: 0.05}] * 3
    u = [{1: 0.01, 0: 0.99}] * 3
    m0, u0 = [{1: 0.9, 0: 0.1}] * 3, [{1: 0.001, 0: 0.999}] * 3
    patterns, counts = _patterns(m, u, 0.99, 2_000)
    assert (1 - 0.99) * 2_000 < MIN_CLASS_PAIRS  # the guard before this refused it
    fit = _fit_stratum(patterns, counts, m0, u0, 0.5, 3)
    assert fit["problem"] is None
    assert fit["share"] == pytest.approx(0.99, abs=0.002)
    assert fit["m"][0][1] == pytest.approx(0.95, abs=0.005)
    assert fit["u"][0][1] < 0.01  # 20 non-matches and the pseudo-counts: between u0 and u

    patterns, counts = _patterns(m, u, 0.005, 2_000)
    refused = _fit_stratum(patterns, counts, m0, u0, 0.5, 3)
    assert refused["share"] == pytest.approx(0.005, abs=0.001)
    assert "match class holds fewer" in refused["problem"]
