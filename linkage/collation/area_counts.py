"""Area counts for service planning, under statistical disclosure control.

Table: one row per area, one column per barrier (people with that barrier at severity 1+)
plus `barrier_total` (the row total: the sum of the barrier columns) and
`multiple_disadvantage` (people with 3+ barrier areas; not part of the row total, since
it counts the same people again). A final `TOTAL` row holds the column totals and the
grand total.

Disclosure control (DESIGN.md):
1. primary suppression: every count from 1 to `min_count - 1` (default 1..7), in the body
   and in the totals;
2. secondary suppression: more cells are suppressed until no suppressed cell can be worked
   out exactly from the published cells and totals. The check is linear algebra over
   every published additive relation (row sums, column sums, the grand total), treating
   published values as exact, which is stronger than what an attacker gets after
   rounding. This covers the simple case (a line with one suppressed cell: total minus the
   others) and chains across several rows and columns;
3. rounding: every published count to the nearest `rounding_base` (default 5); totals are
   computed from the unrounded data, then suppressed or rounded themselves.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.files import write_file_atomic

TOTAL_ROW = "TOTAL"
ROW_TOTAL_COLUMN = "barrier_total"
MULTIPLE_COLUMN = "multiple_disadvantage"
SUPPRESSED_MARK = "[c]"  # ONS convention for a confidential (suppressed) cell


class AreaCountsError(ValueError):
    """Bad area-count input: a lookup file, a level or a setting."""


@dataclass(frozen=True)
class DisclosureSettings:
    min_count: int = 8  # counts 1..min_count-1 are suppressed
    rounding_base: int = 5

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.rounding_base < 1:
            raise AreaCountsError("min_count and rounding_base must be whole numbers >= 1")

    def primary(self, value: int) -> bool:
        return 1 <= value < self.min_count

    def round(self, value: int) -> int:
        base = self.rounding_base
        return int((value + base // 2) // base * base) if base > 1 else int(value)


@dataclass(frozen=True)
class PersonAreaProfile:
    """What the counts need about one person: an area and the barrier codes they have."""

    area: str
    barriers: frozenset[str]
    multiple_disadvantage: bool


# A cell key: (row, column) where row is an area or TOTAL_ROW and column a barrier code,
# ROW_TOTAL_COLUMN or MULTIPLE_COLUMN.
Cell = tuple[str, str]


@dataclass
class AreaCountTable:
    level: str
    areas: list[str]
    barrier_columns: list[str]
    raw: dict[Cell, int]  # unrounded counts incl. totals (never published)
    settings: DisclosureSettings
    suppressed: dict[Cell, str] = field(default_factory=dict)  # cell -> "primary"|"secondary"
    taxonomy_version: str = ""

    @property
    def columns(self) -> list[str]:
        return [*self.barrier_columns, ROW_TOTAL_COLUMN, MULTIPLE_COLUMN]

    @property
    def rows(self) -> list[str]:
        return [*self.areas, TOTAL_ROW]

    def published(self, cell: Cell) -> int | None:
        """The value that leaves the service: None when suppressed, else rounded."""
        if cell in self.suppressed:
            return None
        return self.settings.round(self.raw[cell])

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.level, *self.columns])
        for row in self.rows:
            values = [self.published((row, col)) for col in self.columns]
            writer.writerow([row, *(SUPPRESSED_MARK if v is None else v for v in values)])
        return out.getvalue()

    def metadata(self) -> dict:
        return {
            "level": self.level,
            "taxonomy_version": self.taxonomy_version,
            "min_count": self.settings.min_count,
            "rounding_base": self.settings.rounding_base,
            "suppressed_primary": sum(1 for v in self.suppressed.values() if v == "primary"),
            "suppressed_secondary": sum(1 for v in self.suppressed.values() if v == "secondary"),
            "areas": len(self.areas),
            "suppressed_mark": SUPPRESSED_MARK,
            "note": "people with each barrier (severity 1+) by area; counts 1 to "
            f"{self.settings.min_count - 1} suppressed, secondary suppression applied, "
            f"others rounded to the nearest {self.settings.rounding_base}",
        }

    def relations(self) -> list[tuple[list[Cell], Cell]]:
        """Every additive relation a reader can use: (cells that sum to, total cell)."""
        rels: list[tuple[list[Cell], Cell]] = []
        for row in self.rows:  # row sums over barrier columns (TOTAL row: column totals -> grand)
            rels.append(([(row, c) for c in self.barrier_columns], (row, ROW_TOTAL_COLUMN)))
        for col in self.columns:  # column sums over areas
            rels.append(([(a, col) for a in self.areas], (TOTAL_ROW, col)))
        return rels


def area_profiles(
    people: Iterable[tuple[str | None, Iterable[str]]], multiple_min: int = 3
) -> list[PersonAreaProfile]:
    """Profiles from (area, barrier codes) pairs; a person with no known area is '(unknown)'."""
    out = []
    for area, codes in people:
        codes = frozenset(codes)
        out.append(PersonAreaProfile(area or "(unknown)", codes, len(codes) >= multiple_min))
    return out


def count_by_area(
    profiles: Iterable[PersonAreaProfile],
    barrier_columns: list[str],
    level: str,
    settings: DisclosureSettings | None = None,
    taxonomy_version: str = "",
) -> AreaCountTable:
    """Raw counts with totals; then apply `protect` before publishing anything."""
    profiles = list(profiles)
    areas = sorted({p.area for p in profiles})
    table = AreaCountTable(level, areas, list(barrier_columns), {}, settings or DisclosureSettings(),
                           taxonomy_version=taxonomy_version)
    for row in table.rows:
        for col in table.columns:
            table.raw[(row, col)] = 0
    for p in profiles:
        for code in p.barriers:
            if code in barrier_columns:
                table.raw[(p.area, code)] += 1
        if p.multiple_disadvantage:
            table.raw[(p.area, MULTIPLE_COLUMN)] += 1
    # Totals from the unrounded body.
    for area in areas:
        table.raw[(area, ROW_TOTAL_COLUMN)] = sum(table.raw[(area, c)] for c in barrier_columns)
    for col in table.columns:
        table.raw[(TOTAL_ROW, col)] = sum(table.raw[(a, col)] for a in areas)
    return table


def protect(table: AreaCountTable) -> AreaCountTable:
    """Apply primary then secondary suppression in place; returns the table."""
    table.suppressed = {
        cell: "primary" for cell, value in table.raw.items() if table.settings.primary(value)
    }
    _secondary_suppression(table)
    return table


def determined_cells(table: AreaCountTable, suppressed: Iterable[Cell] | None = None) -> set[Cell]:
    """Suppressed cells whose exact value follows from the published cells and relations.

    Moving published values to the right-hand side leaves a linear system A x = b over the
    suppressed cells x. A cell is pinned down exactly when its unit vector lies in the row
    space of A, i.e. when its coordinate is zero in every null-space vector of A.
    """
    hidden = list(table.suppressed if suppressed is None else suppressed)
    if not hidden:
        return set()
    index = {cell: i for i, cell in enumerate(hidden)}
    rows = []
    for cells, total in table.relations():
        vec = np.zeros(len(hidden))
        for c in cells:
            if c in index:
                vec[index[c]] += 1.0
        if total in index:
            vec[index[total]] -= 1.0
        if vec.any():
            rows.append(vec)
    if not rows:
        return set()
    a = np.array(rows)
    _, s, vt = np.linalg.svd(a)
    rank = int((s > 1e-9).sum())
    null = vt[rank:]  # basis of the null space (rows)
    if null.shape[0] == 0:
        return set(hidden)
    free = np.abs(null).max(axis=0) > 1e-9
    return {cell for cell, is_free in zip(hidden, free, strict=True) if not is_free}


def _secondary_suppression(table: AreaCountTable) -> None:
    """Suppress complementary cells until no suppressed cell is determined.

    Every cell is in one or two additive relations (its row's and its column's). A hidden
    cell stays undetermined when it lies on a cycle of hidden cells through those
    relations (the classic "rectangle" of complementary suppressions), so for a determined
    cell we add the cheapest path of published cells that closes such a cycle (cost: the
    cell's value; zeros and totals cost more), then check again with linear algebra.
    """
    relations = table.relations()
    member_of: dict[Cell, list[int]] = {}
    for n, (cells, total) in enumerate(relations):
        for c in (*cells, total):
            member_of.setdefault(c, []).append(n)
    while True:
        stuck = determined_cells(table)
        if not stuck:
            return
        target = min(stuck, key=lambda c: (table.raw[c], c))
        lines = member_of.get(target, [])
        if len(lines) == 2:
            path = _cheapest_cycle_path(table, relations, member_of, target, lines[0], lines[1])
        else:  # a cell in one relation only: one more hidden cell in that relation
            path = _complement_candidates(table, target)[:1]
        if not path:  # no way to close a cycle: widen to every published cell
            path = sorted((c for c in table.raw if c not in table.suppressed),
                          key=lambda c: _preference(table, c))[:1]
        if not path:  # nothing left to hide: every cell is already suppressed
            return
        for cell in path:
            table.suppressed[cell] = "secondary"


def _cell_cost(table: AreaCountTable, cell: Cell) -> float:
    if cell in table.suppressed:
        return 0.0
    is_total = cell[0] == TOTAL_ROW or cell[1] == ROW_TOTAL_COLUMN
    value = table.raw[cell]
    return value + (table.settings.min_count if value == 0 else 0) + (1e6 if is_total else 0)


def _cheapest_cycle_path(table, relations, member_of, target: Cell, start: int, goal: int) -> list[Cell]:
    """Published cells on the cheapest path of cells from relation `start` to `goal`
    (not through `target`); with `target` it closes a cycle of hidden cells."""
    import heapq

    best = {start: 0.0}
    came: dict[int, tuple[int, Cell]] = {}
    heap = [(0.0, start)]
    while heap:
        cost, node = heapq.heappop(heap)
        if node == goal:
            break
        if cost > best.get(node, float("inf")):
            continue
        cells, total = relations[node]
        for cell in (*cells, total):
            if cell == target:
                continue
            for nxt in member_of[cell]:
                if nxt == node:
                    continue
                new = cost + _cell_cost(table, cell)
                if new < best.get(nxt, float("inf")):
                    best[nxt] = new
                    came[nxt] = (node, cell)
                    heapq.heappush(heap, (new, nxt))
    if goal not in came:
        return []
    path, node = [], goal
    while node != start:
        node, cell = came[node]
        path.append(cell)
    return [c for c in path if c not in table.suppressed]


def _complement_candidates(table: AreaCountTable, target: Cell) -> list[Cell]:
    related: set[Cell] = set()
    for cells, total in table.relations():
        members = [*cells, total]
        if target in members:
            related.update(members)
    published = [c for c in related if c not in table.suppressed]
    return sorted(published, key=lambda c: _preference(table, c))


def _preference(table: AreaCountTable, cell: Cell) -> tuple:
    is_total = cell[0] == TOTAL_ROW or cell[1] == ROW_TOTAL_COLUMN
    value = table.raw[cell]
    return (is_total, value == 0, value, cell)


def read_area_lookup(path: Path | str, level: str) -> dict[str, str]:
    """postcode sector -> area at `level` from a CSV with a `postcode_sector` column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AreaCountsError(f"{path}: cannot read area lookup: {exc.strerror}") from exc
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "postcode_sector" not in fields or level not in fields:
        raise AreaCountsError(
            f"{path}: needs columns postcode_sector and {level}; has {', '.join(fields) or 'none'}"
        )
    lookup: dict[str, str] = {}
    for n, row in enumerate(reader, start=2):
        sector = _norm_sector(row.get("postcode_sector"))
        area = (row.get(level) or "").strip()
        if not sector or not area:
            raise AreaCountsError(f"{path}: row {n}: empty postcode_sector or {level}")
        if sector in lookup and lookup[sector] != area:
            raise AreaCountsError(f"{path}: row {n}: sector {sector} mapped twice")
        lookup[sector] = area
    return lookup


def area_of(content_area: Mapping | None, level: str, lookup: Mapping[str, str] | None) -> str | None:
    """The area at `level` for a content row's `area` object."""
    if not content_area:
        return None
    sector = _norm_sector(content_area.get("postcode_sector"))
    if level == "sector":
        return sector
    if level == "district":
        return (content_area.get("postcode_district") or "").strip().upper() or None
    if lookup is None:
        raise AreaCountsError(f"level {level!r} needs an area lookup file")
    return lookup.get(sector or "", "(unmapped)") if sector else None


def write_outputs(table: AreaCountTable, out_dir: Path | str, extra_metadata: dict | None = None) -> dict[str, Path]:
    """Write hotspots.csv, hotspots.json (metadata) and hotspots.png atomically into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / f"hotspots-{table.level}.csv",
        "metadata": out_dir / f"hotspots-{table.level}.json",
        "chart": out_dir / f"hotspots-{table.level}.png",
    }
    write_file_atomic(paths["csv"], table.to_csv().encode())
    meta = {**table.metadata(), **(extra_metadata or {})}
    write_file_atomic(paths["metadata"], json.dumps(meta, indent=2).encode())
    write_file_atomic(paths["chart"], render_chart(table))
    return paths


def render_chart(table: AreaCountTable) -> bytes:
    """A heat map of the published (suppressed + rounded) counts; suppressed cells marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [*table.barrier_columns, MULTIPLE_COLUMN]
    rows = table.areas or ["(none)"]
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, area in enumerate(table.areas):
        for j, col in enumerate(cols):
            value = table.published((area, col))
            if value is not None:
                grid[i, j] = value
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(cols), 1.5 + 0.35 * len(rows)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="Oranges", aspect="auto")
    for i, area in enumerate(table.areas):
        for j, col in enumerate(cols):
            value = table.published((area, col))
            ax.text(j, i, SUPPRESSED_MARK if value is None else str(value), ha="center",
                    va="center", fontsize=7, color="grey" if value is None else "black")
    ax.set_xticks(range(len(cols)), [("MD" if c == MULTIPLE_COLUMN else c) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(
        f"People with each barrier by {table.level} (taxonomy {table.taxonomy_version}); "
        f"{SUPPRESSED_MARK} = suppressed, others rounded to {table.settings.rounding_base}",
        fontsize=8,
    )
    fig.colorbar(image, ax=ax, shrink=0.6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _norm_sector(value: object) -> str | None:
    text = " ".join(str(value or "").upper().split())
    return text or None


