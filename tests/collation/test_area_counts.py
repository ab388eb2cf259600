"""Disclosure control of area counts: no count 1..7 anywhere, and no suppressed cell can be
worked out from what is published (checked by brute force per suppressed cell)."""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pytest
from scipy.optimize import linprog

from linkage.collation.area_counts import (
    MULTIPLE_COLUMN,
    ROW_TOTAL_COLUMN,
    SUPPRESSED_MARK,
    TOTAL_ROW,
    AreaCountsError,
    DisclosureSettings,
    area_of,
    area_profiles,
    count_by_area,
    determined_cells,
    protect,
    read_area_lookup,
    write_outputs,
)

CODES = ["MH", "PH", "DIS", "SUB", "HOU", "FIN"]


def random_people(seed: int, n: int, areas: int) -> list:
    rng = random.Random(seed)
    # Skewed area sizes and prevalences, so some cells are small and some large.
    weights = [rng.random() ** 2 + 0.02 for _ in range(areas)]
    names = [f"CT{9 + i // 5} {i % 5}" for i in range(areas)]
    prevalence = {c: rng.uniform(0.02, 0.3) for c in CODES}
    people = []
    for _ in range(n):
        area = rng.choices(names, weights)[0]
        people.append((area, [c for c in CODES if rng.random() < prevalence[c]]))
    return area_profiles(people)


def make_table(seed: int, settings: DisclosureSettings, n: int = 600, areas: int = 8):
    return protect(count_by_area(random_people(seed, n, areas), CODES, "sector", settings))


def parse_csv(text: str) -> dict:
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0][1:]
    out = {}
    for r in rows[1:]:
        for col, v in zip(header, r[1:], strict=True):
            out[(r[0], col)] = None if v == SUPPRESSED_MARK else int(v)
    return out


def feasible_range(table, cell, published: dict) -> tuple[float, float]:
    """Min and max of one suppressed cell over every non-negative table that agrees with
    every published value and every additive relation (an LP: the attacker's best bound)."""
    hidden = [c for c, v in published.items() if v is None]
    idx = {c: i for i, c in enumerate(hidden)}
    a_eq, b_eq = [], []
    for cells, total in table.relations():
        vec, rhs = np.zeros(len(hidden)), 0.0
        for c in cells:
            if c in idx:
                vec[idx[c]] += 1
            else:
                rhs -= published[c]
        if total in idx:
            vec[idx[total]] -= 1
        else:
            rhs += published[total]
        if vec.any():
            a_eq.append(vec)
            b_eq.append(rhs)
    bounds = [(0, None)] * len(hidden)
    objective = np.zeros(len(hidden))
    objective[idx[cell]] = 1
    lo = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    hi = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert lo.status == 0 and hi.status in (0, 3)  # 3: unbounded above is fine
    return lo.fun, (np.inf if hi.status == 3 else -hi.fun)


@pytest.mark.parametrize("seed", range(12))
def test_no_suppressed_cell_is_recoverable_from_totals(seed):
    # Rounding off (base 1), so published values are exact: the strongest attacker.
    table = make_table(seed, DisclosureSettings(min_count=8, rounding_base=1))
    published = parse_csv(table.to_csv())
    hidden = [c for c, v in published.items() if v is None]
    assert any(table.suppressed[c] == "primary" for c in hidden)
    for cell in hidden:
        # 1. The literal differencing attack: a line with exactly one hidden cell.
        for cells, total in table.relations():
            members = [*cells, total]
            if cell in members:
                assert sum(published[m] is None for m in members) != 1, (cell, total)
        # 2. Every combination of relations (LP over all of them at once).
        lo, hi = feasible_range(table, cell, published)
        assert hi - lo >= 1, (cell, lo, hi, table.raw[cell])
        assert lo <= table.raw[cell] <= hi  # the attack model is right about the truth


@pytest.mark.parametrize("seed", range(6))
def test_no_count_from_one_to_seven_is_published_and_rounding(seed):
    table = make_table(seed, DisclosureSettings(), n=400, areas=10)
    published = parse_csv(table.to_csv())
    values = [v for v in published.values() if v is not None]
    assert values and not any(1 <= v <= 7 for v in values)
    assert all(v % 5 == 0 for v in values)
    for cell, v in published.items():
        if v is not None:
            raw = table.raw[cell]
            assert abs(v - raw) <= 2 and raw >= 8 or raw == 0
    # Totals come from the unrounded body (not the sum of rounded cells).
    raw_total = sum(table.raw[(a, "MH")] for a in table.areas)
    assert table.raw[(TOTAL_ROW, "MH")] == raw_total


def test_configurable_threshold_and_rounding():
    table = make_table(3, DisclosureSettings(min_count=11, rounding_base=10), n=500)
    values = [v for v in parse_csv(table.to_csv()).values() if v is not None]
    assert not any(1 <= v <= 9 for v in values)  # 11..14 publish as 10
    assert all(v % 10 == 0 for v in values)
    assert all(table.raw[c] >= 11 or table.raw[c] == 0 for c in table.raw if c not in table.suppressed)


def test_hand_made_table_needs_secondary_suppression():
    # One area with a single small MH count: MH column total minus the other published
    # areas would reveal it without a complementary suppression.
    people = [("A", ["MH"])] * 3 + [("B", ["MH"])] * 20 + [("C", ["MH"])] * 30 + [("A", ["PH"])] * 40 \
        + [("B", ["PH"])] * 12 + [("C", ["PH"])] * 50
    table = protect(count_by_area(area_profiles(people), ["MH", "PH"], "sector",
                                  DisclosureSettings(rounding_base=1)))
    assert table.suppressed[("A", "MH")] == "primary"
    secondary = [c for c, kind in table.suppressed.items() if kind == "secondary"]
    assert secondary, "a lone suppressed cell must get complements"
    assert ("B", "MH") in secondary  # the smallest cell in its column
    assert not any(1 <= v <= 7 for c, v in parse_csv(table.to_csv()).items() if v is not None)


def test_multiple_disadvantage_column_and_row_total():
    people = [("A", ["MH", "PH", "HOU"])] * 9 + [("A", ["MH"])] * 10
    table = count_by_area(area_profiles(people), CODES, "sector")
    assert table.raw[("A", MULTIPLE_COLUMN)] == 9
    assert table.raw[("A", ROW_TOTAL_COLUMN)] == 9 * 3 + 10


def test_lookup_levels_and_outputs(tmp_path):
    lookup = tmp_path / "areas.csv"
    lookup.write_text("postcode_sector,ward,lsoa\nCT9 1,Margate Central,E01024424\nct9  2,Cliftonville West,E01024425\n")
    wards = read_area_lookup(lookup, "ward")
    assert area_of({"postcode_sector": "CT9 2"}, "ward", wards) == "Cliftonville West"
    assert area_of({"postcode_sector": "CT11 7"}, "ward", wards) == "(unmapped)"
    assert area_of({"postcode_sector": "ct9 1", "postcode_district": "CT9"}, "sector", None) == "CT9 1"
    with pytest.raises(AreaCountsError, match="needs columns postcode_sector and msoa"):
        read_area_lookup(lookup, "msoa")
    bad = tmp_path / "bad.csv"
    bad.write_text("postcode_sector,ward\nCT9 1,\n")
    with pytest.raises(AreaCountsError, match="bad.csv: row 2: empty"):
        read_area_lookup(bad, "ward")
    with pytest.raises(AreaCountsError, match="needs an area lookup"):
        area_of({"postcode_sector": "CT9 1"}, "ward", None)

    table = make_table(1, DisclosureSettings())
    paths = write_outputs(table, tmp_path / "out", {"decision_id": "dec-1"})
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[c]" in paths["csv"].read_text()
    assert '"decision_id": "dec-1"' in paths["metadata"].read_text()
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_secondary_suppression_closes_rectangles_instead_of_cascading():
    # One area with three small counts: the cheapest protection is the same three
    # columns in one other area (a rectangle), not a cascade across the table.
    people = []
    for area, n in (("A", 40), ("B", 60), ("C", 90), ("D", 120)):
        people += [(area, ["MH", "PH", "FIN"])] * n
    people += [("U", ["SUB"])] * 3 + [("U", ["CLV"])] * 2 + [("U", ["FAM"])] * 5 + [("U", ["MH"])] * 50
    for area, n in (("A", 30), ("B", 40), ("C", 50), ("D", 60)):
        people += [(area, ["SUB", "CLV", "FAM"])] * n
    table = protect(count_by_area(area_profiles(people, 99), ["MH", "PH", "FIN", "SUB", "CLV", "FAM"],
                                  "sector", DisclosureSettings(rounding_base=1)))
    secondary = sorted(c for c, kind in table.suppressed.items() if kind == "secondary")
    assert secondary == [("A", "CLV"), ("A", "FAM"), ("A", "SUB")]
    assert not determined_cells(table)
