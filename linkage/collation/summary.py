"""A consented barrier summary for one person, built from their decrypted content rows.

Input: the content dicts of one entity's records (docs/CONTRACTS.md content plaintext:
`source`, `kind`, `area`, `indicators`). Output: current barriers with severity, the kinds
of agency evidencing each and when last seen, the multiple-disadvantage flag, service
needs and the outcome payment. Nothing else: no indicator, value, diagnosis, raw record,
prediction or score ever reaches the summary.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, date, datetime
from typing import Any

from linkage.collation.taxonomy import SEVERITY_WORDS, Taxonomy, parse_date


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value  # str, int, float, bool or None: the summary holds nothing mutable


class AdjustmentError(ValueError):
    """An adviser's payment adjustment is outside the approved bounds or has no reason."""


@dataclass(frozen=True)
class BarrierFinding:
    code: str
    label: str
    severity: int  # 1..3 (a barrier at 0 is not reported)
    evidenced_by: tuple[str, ...]  # kinds of agency, e.g. ("housing", "nhs")
    last_seen: str | None  # ISO date of the latest matching indicator, None when undated


@dataclass(frozen=True)
class OutcomePayment:
    tariff_gbp: float
    adjustment_gbp: float
    adjustment_reason: str | None
    total_gbp: float


@dataclass(frozen=True)
class BarrierSummary:
    summary_id: str
    created_at: str
    taxonomy_version: str
    categories_in_scope: tuple[str, ...]  # the barrier codes this summary may speak about
    barriers: tuple[BarrierFinding, ...]
    multiple_disadvantage: bool
    service_needs: tuple[str, ...]
    outcome_payment: OutcomePayment
    consent_receipt_id: str | None
    policy_decision_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """What dataclasses.asdict gives, without its deep copies of immutable leaves
        (a third of the time; this runs on every summary the service discloses)."""
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, taxonomy: Taxonomy | None = None) -> str:
        """A readable view for the adviser; missing barriers say "no record", not "no need"."""
        lines = [
            f"Barrier summary {self.summary_id}",
            f"  taxonomy {self.taxonomy_version}; consent receipt {self.consent_receipt_id}; "
            f"policy decision {self.policy_decision_id}",
            "",
        ]
        if self.barriers:
            lines.append("Current barriers:")
            for b in self.barriers:
                seen = b.last_seen or "undated"
                lines.append(
                    f"  {b.code:<4} {b.label}: severity {b.severity} ({SEVERITY_WORDS[b.severity]}); "
                    f"evidenced by {', '.join(b.evidenced_by)}; last seen {seen}"
                )
        else:
            lines.append("Current barriers: none on record in the categories in scope.")
        found = {b.code for b in self.barriers}
        missing = [c for c in self.categories_in_scope if c not in found]
        if missing:
            named = [
                f"{c} ({taxonomy.barriers[c].label})" if taxonomy and c in taxonomy.barriers else c
                for c in missing
            ]
            lines.append(
                "No record (this means no agency record, NOT that there is no need): "
                + ", ".join(named)
            )
        lines.append("")
        lines.append(
            "Multiple disadvantage: "
            + ("yes" if self.multiple_disadvantage else "no")
            + f" ({len(self.barriers)} barrier area(s) on record in scope)"
        )
        if self.service_needs:
            lines.append("Service needs: " + "; ".join(self.service_needs))
        p = self.outcome_payment
        lines.append(f"Outcome payment: tariff GBP {p.tariff_gbp:,.2f}")
        if p.adjustment_gbp:
            lines.append(f"  adjustment GBP {p.adjustment_gbp:+,.2f} (reason: {p.adjustment_reason})")
        lines.append(f"  total GBP {p.total_gbp:,.2f}")
        return "\n".join(lines)


def assess_barriers(
    content_rows: Iterable[dict[str, Any]], taxonomy: Taxonomy, as_of: date
) -> dict[str, BarrierFinding]:
    """The current barriers evidenced by one person's content rows (all barrier codes)."""
    severity: dict[str, int] = {}
    kinds: dict[str, set[str]] = {}
    last_seen: dict[str, date | None] = {}
    for row in content_rows:
        kind = str(row.get("kind") or row.get("source") or "unknown")
        for ind in row.get("indicators") or []:
            when = parse_date(ind.get("date"))
            for rule in taxonomy.rules_for(str(ind.get("code"))):
                if not rule.matches(ind.get("value")) or not taxonomy.is_current(rule, when, as_of):
                    continue
                code = rule.barrier
                severity[code] = max(severity.get(code, 0), rule.severity)
                kinds.setdefault(code, set()).add(kind)
                if when is not None and (last_seen.get(code) is None or when > last_seen[code]):
                    last_seen[code] = when
                else:
                    last_seen.setdefault(code, None)
    order = list(taxonomy.barriers)
    return {
        code: BarrierFinding(
            code=code,
            label=taxonomy.barriers[code].label,
            severity=severity[code],
            evidenced_by=tuple(sorted(kinds[code])),
            last_seen=last_seen[code].isoformat() if last_seen.get(code) else None,
        )
        for code in sorted(severity, key=order.index)
    }


def outcome_payment(
    taxonomy: Taxonomy,
    findings: Iterable[BarrierFinding],
    adjustment_gbp: float = 0.0,
    adjustment_reason: str | None = None,
) -> OutcomePayment:
    """Tariff over barrier x severity plus a bounded, reasoned adviser adjustment."""
    tariff = float(sum(taxonomy.tariff(f.code, f.severity) for f in findings))
    adjustment_gbp = float(adjustment_gbp or 0.0)
    reason = (adjustment_reason or "").strip() or None
    if adjustment_gbp:
        bound = taxonomy.adjustment.bound(tariff)
        if abs(adjustment_gbp) > bound + 1e-9:
            raise AdjustmentError(
                f"adjustment GBP {adjustment_gbp:+,.2f} exceeds the approved bound of "
                f"GBP {bound:,.2f} (the smaller of {taxonomy.adjustment.max_fraction:.0%} of the "
                f"tariff and GBP {taxonomy.adjustment.max_gbp:,.2f}; taxonomy {taxonomy.version})"
            )
        if taxonomy.adjustment.reason_required and not reason:
            raise AdjustmentError("a payment adjustment needs a reason")
    return OutcomePayment(
        tariff_gbp=round(tariff, 2),
        adjustment_gbp=round(adjustment_gbp, 2),
        adjustment_reason=reason if adjustment_gbp else None,
        total_gbp=round(tariff + adjustment_gbp, 2),
    )


def build_barrier_summary(
    content_rows: Iterable[dict[str, Any]],
    taxonomy: Taxonomy,
    *,
    categories: Iterable[str] | None = None,
    consent_receipt_id: str | None = None,
    policy_decision_id: str | None = None,
    adjustment_gbp: float = 0.0,
    adjustment_reason: str | None = None,
    as_of: date | None = None,
    summary_id: str | None = None,
) -> BarrierSummary:
    """Build one person's summary, restricted to `categories` (None: every barrier code).

    Minimisation: barriers outside `categories` are dropped before anything else is
    computed, so the multiple-disadvantage flag, service needs and the payment reveal
    nothing about them either.
    """
    now = datetime.now(UTC)
    as_of = as_of or now.date()
    scope = tuple(taxonomy.barriers) if categories is None else tuple(
        c for c in taxonomy.barriers if c in set(categories)
    )
    findings = [f for c, f in assess_barriers(content_rows, taxonomy, as_of).items() if c in scope]
    payment = outcome_payment(taxonomy, findings, adjustment_gbp, adjustment_reason)
    return BarrierSummary(
        summary_id=summary_id or f"sum-{uuid.uuid4().hex}",
        created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        taxonomy_version=taxonomy.version,
        categories_in_scope=scope,
        barriers=tuple(findings),
        multiple_disadvantage=len(findings) >= taxonomy.multiple_disadvantage_min,
        service_needs=tuple(taxonomy.barriers[f.code].service_need for f in findings),
        outcome_payment=payment,
        consent_receipt_id=consent_receipt_id,
        policy_decision_id=policy_decision_id,
    )
