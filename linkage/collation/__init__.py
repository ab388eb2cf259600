"""Collation: consented barrier summaries for one person and suppressed area counts.

Public surface (the rest of the package uses only these):
- taxonomy: `load_taxonomy`, `parse_taxonomy`, `Taxonomy`, `TaxonomyError`
- summary: `build_barrier_summary`, `assess_barriers`, `BarrierSummary`, `AdjustmentError`
- person resolution: `resolve_person`, `decide_resolution`, `Resolution` (MATCHED,
  NO_MATCH, NEEDS_REVIEW)
- area counts: `DisclosureSettings`, `area_profiles`, `count_by_area`, `protect`,
  `determined_cells`, `read_area_lookup`, `area_of`, `write_outputs`, `AreaCountsError`
"""

from linkage.collation.area_counts import (
    AreaCountsError,
    AreaCountTable,
    DisclosureSettings,
    area_of,
    area_profiles,
    count_by_area,
    determined_cells,
    protect,
    read_area_lookup,
    write_outputs,
)
from linkage.collation.resolve import (
    MATCHED,
    NEEDS_REVIEW,
    NO_MATCH,
    Resolution,
    ResolutionSettings,
    ResolutionUnavailable,
    decide_resolution,
    resolve_person,
)
from linkage.collation.summary import (
    AdjustmentError,
    BarrierFinding,
    BarrierSummary,
    OutcomePayment,
    assess_barriers,
    build_barrier_summary,
)
from linkage.collation.taxonomy import Taxonomy, TaxonomyError, load_taxonomy, parse_taxonomy

__all__ = [
    "MATCHED",
    "NEEDS_REVIEW",
    "NO_MATCH",
    "Resolution",
    "ResolutionSettings",
    "ResolutionUnavailable",
    "decide_resolution",
    "resolve_person",
    "AdjustmentError",
    "AreaCountTable",
    "AreaCountsError",
    "BarrierFinding",
    "BarrierSummary",
    "DisclosureSettings",
    "OutcomePayment",
    "Taxonomy",
    "TaxonomyError",
    "area_of",
    "area_profiles",
    "assess_barriers",
    "build_barrier_summary",
    "count_by_area",
    "determined_cells",
    "load_taxonomy",
    "parse_taxonomy",
    "protect",
    "read_area_lookup",
    "write_outputs",
]
