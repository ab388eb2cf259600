"""Area counts for the governance board: people with each barrier and with multiple
disadvantage by area, suppressed and rounded as the decision's obligations say."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from joinedup import collate
from joinedup.errors import InvalidInput
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import ServiceContext
from linkage.collation import write_outputs

AREA_PURPOSE = "service_planning"


@dataclass(frozen=True)
class AreaCountsRequest:
    level: str = "sector"
    purpose: str = AREA_PURPOSE
    categories: list[str] | None = None
    out_dir: Path | None = None
    lookup_path: Path | None = None
    as_of: date | None = None


def request_area_counts(ctx: ServiceContext, caller: Caller,
                        request: AreaCountsRequest) -> dict[str, Any]:
    """{"level", "decision_id", "audit_event_id", "metadata", "columns", "rows", "csv"
    [, "files"]}; one ledger entry (`area_counts.disclosed`, or the refusal)."""
    with Action(ctx, caller, "area_counts.read", purpose=request.purpose) as act:
        act.check_text({"purpose": request.purpose, "level": request.level,
                        "categories": list(request.categories or [])})
        if request.level not in collate.LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(collate.LEVELS)}",
                               [("level", "unknown level")])
        decision = act.decide({"categories": list(request.categories or [])})
        table, columns, taxonomy = collate.area_table(ctx, decision.obligations or {},
                                                      request.level, request.lookup_path,
                                                      request.as_of)
        meta = table.metadata()
        event_id = act.record({
            "type": "area_counts.disclosed", "decision_id": decision.decision_id,
            "purpose": request.purpose, "level": request.level, "categories": columns,
            "taxonomy_version": taxonomy.version, "areas": meta["areas"],
            "suppressed_primary": meta["suppressed_primary"],
            "suppressed_secondary": meta["suppressed_secondary"],
        })
        result: dict[str, Any] = {
            "level": request.level, "decision_id": decision.decision_id,
            "audit_event_id": event_id, "metadata": meta, "columns": table.columns,
            "rows": [{"area": row, **{c: table.published((row, c)) for c in table.columns}}
                     for row in table.rows],
            "csv": table.to_csv(),
        }
        if request.out_dir is not None:
            paths = write_outputs(table, request.out_dir,
                                  {"decision_id": decision.decision_id})
            result["files"] = {k: str(v) for k, v in paths.items()}
        return result
