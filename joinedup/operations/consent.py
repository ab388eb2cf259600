"""Consent actions: grant, withdraw, read a receipt. Decided as `consent.record`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from consent import AlreadyWithdrawn, ConsentError, ConsentRecord
from joinedup.errors import Conflict, InvalidInput, Withheld
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import ServiceContext, now_iso

ACTION = "consent.record"
# One withdrawal of a receipt at a time in this process (a second one is a 409, not a
# second event); across processes the store's gate orders the writes.
_withdraw_lock = threading.Lock()


@dataclass(frozen=True)
class GrantConsent:
    identifiers: dict
    purposes: list[str]
    categories: list[str]
    controllers: list[str] = field(default_factory=list)
    collection_method: str = "in_person_signed"
    privacy_notice_version: str | None = None
    expires_at: str | None = None


@dataclass(frozen=True)
class ConsentGranted:
    receipt_id: str
    person_key: str
    purposes: list[str]
    categories: list[str]
    expires_at: str
    receipt: dict
    event_id: str


@dataclass(frozen=True)
class WithdrawConsent:
    receipt_id: str


@dataclass(frozen=True)
class ConsentWithdrawn:
    receipt_id: str
    withdrawn_at: str
    event_id: str


@dataclass(frozen=True)
class ReadReceipt:
    receipt_id: str


def grant_consent(ctx: ServiceContext, caller: Caller, request: GrantConsent) -> ConsentGranted:
    """Record a person's consent: decide, record `consent.granted` (the whole record, so
    recovery can apply it again), then write it to the consent store."""
    purposes = list(request.purposes)
    with Action(ctx, caller, ACTION, purpose=purposes[0] if purposes else None) as act:
        act.check_text({"purposes": purposes, "categories": list(request.categories),
                        "controllers": list(request.controllers),
                        "collection_method": request.collection_method,
                        "privacy_notice_version": request.privacy_notice_version,
                        "expires_at": request.expires_at})
        if not purposes:
            raise InvalidInput("at least one purpose is needed", [("purposes", "empty")])
        person_key = ctx.person_key(request.identifiers)
        act.consent = ctx.consent.current(person_key, purposes[0], now_iso(),
                                          controller=caller.organisation)
        for purpose in purposes:
            act.decide({"person_key": person_key, "categories": list(request.categories)},
                       purpose=purpose)
        try:
            record = ctx.consent.prepare_grant(
                person_key=person_key, purposes=purposes, categories=list(request.categories),
                controllers=list(request.controllers) or [caller.organisation],
                collection_method=request.collection_method,
                privacy_notice_version=request.privacy_notice_version,
                expires_at=request.expires_at, recorded_by=caller.id)
        except ConsentError as exc:
            raise InvalidInput(str(exc), [("consent", str(exc))]) from exc
        event_id = act.record(granted_event(record))
        ctx.consent.apply("granted", record, event_id)
        return ConsentGranted(record.receipt_id, person_key, record.purposes, record.categories,
                              record.expires_at, ctx.consent.receipt(record.receipt_id), event_id)


def granted_event(record: ConsentRecord) -> dict:
    return {"type": "consent.granted", "person_key": record.person_key,
            "receipt_id": record.receipt_id, "purposes": list(record.purposes),
            "categories": list(record.categories), "record": record.to_dict()}


def withdraw_consent(ctx: ServiceContext, caller: Caller,
                     request: WithdrawConsent) -> ConsentWithdrawn:
    """Withdraw a consent; effective for the next request. Only an adviser of an
    organisation that holds the consent may; a second withdrawal is a Conflict."""
    with Action(ctx, caller, ACTION) as act:
        record = _held_record(ctx, act, request.receipt_id)
        with _withdraw_lock:
            record = ctx.consent.record(record.receipt_id)
            try:
                withdrawn = ctx.consent.prepare_withdraw(record, by=caller.id)
            except AlreadyWithdrawn as exc:
                raise Conflict(str(exc)) from exc
            event_id = act.record(withdrawn_event(withdrawn))
            ctx.consent.apply("withdrawn", withdrawn, event_id)
        return ConsentWithdrawn(withdrawn.receipt_id, withdrawn.withdrawn_at or "", event_id)


def withdrawn_event(record: ConsentRecord) -> dict:
    return {"type": "consent.withdrawn", "person_key": record.person_key,
            "receipt_id": record.receipt_id, "withdrawn_at": record.withdrawn_at,
            "record": record.to_dict()}


def read_receipt(ctx: ServiceContext, caller: Caller, request: ReadReceipt) -> dict:
    """The signed receipt of a consent, for an adviser of an organisation holding it."""
    with Action(ctx, caller, ACTION) as act:
        record = _held_record(ctx, act, request.receipt_id)
        return ctx.consent.receipt(record.receipt_id)


def _held_record(ctx: ServiceContext, act: Action, receipt_id: str) -> ConsentRecord:
    """The consent behind a receipt id, decided; Withheld, the same whether it does not
    exist or is held by an organisation the caller is not part of."""
    act.check_text({"receipt_id": receipt_id})
    record = ctx.consent.find(receipt_id)
    if record is None:
        act.consent = {"status": "unknown", "controllers": []}
    else:
        act.consent = {"status": record.status_at(now_iso()), "controllers": record.controllers}
    act.decide({"person_key": record.person_key if record else None},
               purpose=record.purposes[0] if record and record.purposes else None)
    if record is None or act.caller.organisation not in record.controllers:
        raise Withheld(act.decisions[-1].decision_id)
    return record


@dataclass(frozen=True)
class ConsentStatusRequest:
    identifiers: dict
    purposes: list[str] = field(default_factory=list)  # empty: every purpose


def consent_status(ctx: ServiceContext, caller: Caller, request: ConsentStatusRequest) -> dict:
    """The person's consent per purpose, as the caller's organisation holds it (another
    organisation's consent is, to it, none). Decided as `consent.record`; one entry."""
    with Action(ctx, caller, ACTION) as act:
        act.check_text({"purposes": list(request.purposes)})
        person_key = ctx.person_key(request.identifiers)
        wanted = list(request.purposes) or list(ctx.consent.catalogue.purposes)
        act.consent = {"status": "none"}
        act.decide({"person_key": person_key}, purpose=wanted[0])
        return {p: ctx.consent.current(person_key, p, now_iso(), controller=caller.organisation)
                for p in wanted}


def consent_history(ctx: ServiceContext, caller: Caller, identifiers: dict) -> list[dict]:
    """The append-only history of the person's consents held by the caller's organisation."""
    with Action(ctx, caller, ACTION) as act:
        person_key = ctx.person_key(identifiers)
        act.consent = {"status": "none"}
        act.decide({"person_key": person_key})
        return [e for e in ctx.consent.history(person_key)
                if caller.organisation in (e["record"].get("controllers") or [])]
