"""Referral actions: an adviser refers a person to a provider; the provider lists and
reads the referral summaries addressed to it (only the barriers it was asked to address)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

from joinedup import collate
from joinedup.errors import Withheld
from joinedup.operations.protocol import Action, Caller
from joinedup.operations.summaries import SummaryResult, disclose_summary
from joinedup.service_context import ServiceContext, now_iso, standardise_identifiers


@dataclass
class Referral:
    referral_id: str
    person_key: str
    entity_id: str | None
    provider: str
    barriers: list[str]
    purpose: str
    created_by: str
    created_by_org: str
    created_at: str
    decision_id: str | None

    def public(self) -> dict:
        """What a caller sees of the referral record (person key is pseudonymous)."""
        return {"referral_id": self.referral_id, "provider": self.provider,
                "barriers": self.barriers, "purpose": self.purpose,
                "created_by_org": self.created_by_org, "created_at": self.created_at}

    def resource(self) -> dict:
        """The policy input's `resource` for an action on this referral."""
        return {"person_key": self.person_key, "categories": self.barriers,
                "provider": self.provider, "referred_to": [self.provider]}


@dataclass(frozen=True)
class CreateReferral:
    identifiers: dict
    provider: str
    barriers: list[str]
    purpose: str = "employment_support"


@dataclass(frozen=True)
class ReadReferral:
    referral_id: str
    as_of: Any = None


@dataclass(frozen=True)
class ReferralSummary:
    referral: Referral
    summary: SummaryResult


def create_referral(ctx: ServiceContext, caller: Caller, request: CreateReferral) -> Referral:
    """Decide first (before the person is looked up), resolve the person, record
    `referral.created` (every column of the row), then insert the row (idempotent)."""
    with Action(ctx, caller, "referral.create", purpose=request.purpose) as act:
        act.check_text({"provider": request.provider, "barriers": list(request.barriers),
                        "purpose": request.purpose})
        identity = standardise_identifiers(request.identifiers)
        person_key = ctx.person_key(identity)
        barriers = sorted(set(request.barriers))
        consent = ctx.consent.current(person_key, request.purpose, now_iso(),
                                      controller=caller.organisation)
        decision = act.decide({"person_key": person_key, "categories": barriers,
                               "provider": request.provider,
                               "referred_to": [request.provider]}, consent=consent)
        resolution = collate.resolve_identifiers(ctx, identity)
        if resolution.entity_id is None:
            raise act.not_found(f"no single linked person for these identifiers "
                                f"({resolution.outcome}: {resolution.reason})")
        referral = Referral(f"ref-{uuid.uuid4().hex}", person_key, resolution.entity_id,
                            request.provider, barriers, request.purpose, caller.id,
                            caller.organisation, now_iso(), decision.decision_id)
        act.record(created_event(referral))
        insert_referral(ctx, referral)
        return referral


def created_event(referral: Referral) -> dict:
    # The ledger guard keeps barrier *content* out: the codes asked for go as `categories`.
    return {"type": "referral.created", "person_key": referral.person_key,
            "referral_id": referral.referral_id, "entity_id": referral.entity_id,
            "provider": referral.provider, "categories": referral.barriers,
            "purpose": referral.purpose, "created_at": referral.created_at,
            "created_by_org": referral.created_by_org}


def referral_from_event(event: dict) -> Referral:
    """The row a `referral.created` event describes (recovery applies it again)."""
    return Referral(event["referral_id"], event["person_key"], event.get("entity_id"),
                    event["provider"], list(event.get("categories") or []),
                    event.get("purpose") or "employment_support", event["actor"]["id"],
                    event.get("created_by_org") or event["actor"]["organisation"],
                    event.get("created_at") or event["time"], event.get("decision_id"))


def insert_referral(ctx: ServiceContext, referral: Referral) -> bool:
    """Insert the row unless it is there already; True when it was inserted."""
    with ctx.store(write=True) as cur:
        inserted = cur.execute(
            "INSERT INTO referrals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (referral_id) DO NOTHING RETURNING referral_id",
            [referral.referral_id, referral.person_key, referral.entity_id, referral.provider,
             json.dumps(referral.barriers), referral.purpose, referral.created_by,
             referral.created_by_org, referral.created_at, referral.decision_id],
        ).fetchall()
    return bool(inserted)


def _referral_index(ctx: ServiceContext) -> tuple[dict[str, Referral], dict[str, list[str]]]:
    """Every referral row by id, and each provider's referral ids in (created_at,
    referral_id) order; read from the store again only after a write to it (any process)."""
    def load(cur) -> tuple[dict[str, Referral], dict[str, list[str]]]:
        rows = cur.execute("SELECT * FROM referrals ORDER BY created_at, referral_id").fetchall()
        by_id = {row[0]: _referral(row) for row in rows}
        by_provider: dict[str, list[str]] = {}
        for referral in by_id.values():
            by_provider.setdefault(referral.provider, []).append(referral.referral_id)
        return by_id, by_provider

    return ctx.store_snapshot("referrals", load)


def _copy(referral: Referral) -> Referral:
    """A caller's own copy (the index is shared by later requests)."""
    return dataclasses.replace(referral, barriers=list(referral.barriers))


def find_referral(ctx: ServiceContext, referral_id: str) -> Referral | None:
    found = _referral_index(ctx)[0].get(referral_id)
    return _copy(found) if found is not None else None


def referrals_for(ctx: ServiceContext, provider: str) -> list[Referral]:
    by_id, by_provider = _referral_index(ctx)
    return [_copy(by_id[i]) for i in by_provider.get(provider, [])]


def list_referrals(ctx: ServiceContext, caller: Caller) -> list[dict]:
    """The referrals addressed to the caller's organisation that the policy lets it read
    now (each one decided, so a withdrawn consent drops it from the list); one entry."""
    visible = []
    with Action(ctx, caller, "referral.read") as act:
        for referral in referrals_for(ctx, caller.organisation):
            decision = act.decide(referral.resource(), purpose=referral.purpose,
                                  consent=ctx.consent.current(referral.person_key,
                                                              referral.purpose, now_iso()),
                                  refuse=False)
            if decision.allow:
                visible.append(referral.public())
        if visible:  # the listing's one entry carries each referral's decision
            act.record({"type": "referral.listed", "provider": caller.organisation,
                        "referral_ids": [r["referral_id"] for r in visible]})
    return visible


def read_referral(ctx: ServiceContext, caller: Caller, request: ReadReferral) -> ReferralSummary:
    """The referral summary: only the barriers the provider was asked to address. Absent
    and "not yours" are the same answer (Withheld), each after the policy has decided."""
    with Action(ctx, caller, "referral.read") as act:
        act.check_text({"referral_id": request.referral_id})
        referral = find_referral(ctx, request.referral_id)
        if referral is None or referral.provider != caller.organisation:
            act.consent = {"status": "unknown", "controllers": []}
            act.decide({"provider": caller.organisation, "referred_to": []}, reveal=False)
            raise Withheld(act.decisions[-1].decision_id)  # allowed by a faulty policy
        summary = referral_summary(ctx, act, referral, request.as_of)
        return ReferralSummary(referral, summary)


def referral_summary(ctx: ServiceContext, act: Action, referral: Referral,
                     as_of: Any = None) -> SummaryResult:
    consent = ctx.consent.current(referral.person_key, referral.purpose, now_iso())
    act.consent = {"status": "unknown", "controllers": []}  # a provider never hears why
    index = collate.current_run_index(ctx)
    refs = index.refs_of(referral.entity_id) if referral.entity_id else []
    kinds = sorted({k for s, _ in refs if (k := index.kind_of(s))})
    decision = act.decide({**referral.resource(), "sources": kinds}, purpose=referral.purpose,
                          consent=consent)
    if not referral.entity_id:
        raise act.not_found(f"referral {referral.referral_id} has no resolved person")
    return disclose_summary(ctx, act, index, referral.person_key, referral.entity_id, refs,
                            decision, consent, referral.purpose, 0.0, None, as_of,
                            provider=referral.provider, event_type="referral.read",
                            referral_id=referral.referral_id)


def _referral(row) -> Referral:
    return Referral(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6],
                    row[7], row[8], row[9])
