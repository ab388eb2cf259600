"""The barrier summary of the person in front of an adviser.

Pseudonymise the identifiers at once, look up the person's consent, let the policy decide
(before the person is looked up in the linked data), resolve the person against the
current link run, decrypt only that person's content rows of the agency kinds the decision
allows, build the summary, and record the disclosure. Raw identifiers live only in the
caller's memory for the length of the request: never logged, stored or put in an event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from joinedup import collate
from joinedup.errors import InvalidInput
from joinedup.operations.protocol import Action, Caller
from joinedup.operations.review import REVIEW_QUEUED, apply_review_request, review_request_for
from joinedup.service_context import ServiceContext, now_iso, standardise_identifiers
from linkage.collation import build_barrier_summary
from linkage.collation.resolve import MATCHED, SEVERAL_PEOPLE, Scorer
from linkage.review import ReviewError

log = logging.getLogger(__name__)

SUMMARY_PURPOSE = "employment_support"


@dataclass(frozen=True)
class SummaryRequest:
    identifiers: dict
    purpose: str = SUMMARY_PURPOSE
    categories: list[str] | None = None
    provider: str | None = None
    adjustment_gbp: float = 0.0
    adjustment_reason: str | None = None
    as_of: date | None = None
    scorer: Scorer | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SummaryResult:
    """`outcome` "matched" with a summary; or "no_match" / "needs_review" with a reason."""

    outcome: str
    decision_id: str
    summary: dict | None = None
    text: str | None = None
    reason: str | None = None
    rows_decrypted: int = 0
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"outcome": self.outcome, "decision_id": self.decision_id,
                               "summary": self.summary}
        if self.summary is not None:
            doc.update(text=self.text, rows_decrypted=self.rows_decrypted)
        else:
            doc["reason"] = self.reason
        return doc


def request_summary(ctx: ServiceContext, caller: Caller, request: SummaryRequest) -> SummaryResult:
    """A consented barrier summary; one ledger entry whatever happens."""
    with Action(ctx, caller, "summary.request", purpose=request.purpose) as act:
        act.check_text({"purpose": request.purpose, "categories": list(request.categories or []),
                        "provider": request.provider,
                        "adjustment_reason": request.adjustment_reason})
        identity = standardise_identifiers(request.identifiers)
        person_key = ctx.person_key(identity)
        consent = ctx.consent.current(person_key, request.purpose, now_iso(),
                                      controller=caller.organisation)
        resource: dict[str, Any] = {"person_key": person_key,
                                    "categories": list(request.categories or [])}
        if request.provider:
            resource.update(provider=request.provider, referred_to=[request.provider])
        decision = act.decide(resource, consent=consent)
        # Only now, allowed, is the person looked up in the linked data.
        resolution = collate.resolve_identifiers(ctx, identity, scorer=request.scorer)
        index = collate.current_run_index(ctx)
        if resolution.outcome != MATCHED:
            # Two linked people both match: the pair goes to the data officers' review
            # queue, recorded in the outcome's event first (recovery finishes it).
            review = review_request_for(index, resolution)
            event = act.decision_event(outcome=resolution.outcome, disclosed=False)
            if review:
                event["review_request"] = review
            event_id = act.record(event)
            reason = resolution.public().get("reason")
            if review:
                try:
                    apply_review_request(ctx, {**event, "event_id": event_id, "actor": caller.subject()})
                except (OSError, ValueError, ReviewError) as exc:
                    # Recorded: recovery stores it; the adviser still gets the answer.
                    log.warning("review request of %s not stored yet: %s", event_id, exc)
            if resolution.cause == SEVERAL_PEOPLE:
                # Said only where it always happens (two people match), so the words tell
                # the adviser nothing the reason does not.
                reason += REVIEW_QUEUED
            return SummaryResult(resolution.outcome, decision.decision_id, reason=reason)
        refs = index.refs_of(resolution.entity_id)
        return disclose_summary(ctx, act, index, person_key, resolution.entity_id, refs,
                                decision, consent, request.purpose, request.adjustment_gbp,
                                request.adjustment_reason, request.as_of,
                                provider=request.provider)


def disclose_summary(ctx: ServiceContext, act: Action, index, person_key: str, entity_id: str,
                     refs: list[tuple[str, str]], decision, consent: dict, purpose: str,
                     adjustment_gbp: float, adjustment_reason: str | None, as_of: date | None,
                     provider: str | None = None, event_type: str = "summary.disclosed",
                     referral_id: str | None = None) -> SummaryResult:
    """Decrypt what the decision allows, build the summary, record the disclosure, and only
    then hand it over."""
    obligations = decision.obligations or {}
    allowed_categories = list(obligations.get("categories") or [])
    allowed_kinds = set(obligations.get("sources") or [])
    # Minimisation before decryption: only the rows of agency kinds the decision allows.
    refs = [(s, r) for s, r in refs if index.kind_of(s) in allowed_kinds]
    docs = collate.decrypt_content(ctx, index, refs)
    taxonomy = collate.load_collation_taxonomy(ctx.home)
    try:
        summary = build_barrier_summary(
            docs, taxonomy, categories=allowed_categories,
            consent_receipt_id=consent.get("receipt_id"), policy_decision_id=decision.decision_id,
            adjustment_gbp=adjustment_gbp, adjustment_reason=adjustment_reason, as_of=as_of,
        )
    except ValueError as exc:  # AdjustmentError: nothing disclosed
        raise InvalidInput(str(exc), [("adjustment", str(exc))]) from exc
    event: dict[str, Any] = {
        "type": event_type, "person_key": person_key, "entity_id": entity_id,
        "summary_id": summary.summary_id, "decision_id": decision.decision_id,
        "receipt_id": consent.get("receipt_id"), "purpose": purpose,
        "categories": list(summary.categories_in_scope), "sources": sorted(allowed_kinds),
        "taxonomy_version": taxonomy.version, "rows_decrypted": len(docs),
    }
    if summary.outcome_payment.adjustment_gbp:
        event["payment_adjustment_gbp"] = summary.outcome_payment.adjustment_gbp
    if provider:
        event["provider"] = provider
    if referral_id:
        event["referral_id"] = referral_id
    event_id = act.record(event)
    return SummaryResult(MATCHED, decision.decision_id, summary=summary.to_dict(),
                         text=summary.to_text(taxonomy), rows_decrypted=len(docs),
                         event_id=event_id)
