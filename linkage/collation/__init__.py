"""Collation: consented barrier summaries for one person and suppressed area counts.

Public surface (the rest of the package uses only these):
- taxonomy: `load_taxonomy`, `parse_taxonomy`, `Taxonomy`, `TaxonomyError`
- summary: `build_barrier_summary`, `assess_barriers`, `BarrierSummary`, `AdjustmentError`
- person resolution: `resolve_person`, `Resolution`
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
