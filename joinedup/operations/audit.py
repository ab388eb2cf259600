"""Audit actions: verify the ledger, the governance report, an inclusion proof, and a
person's subject access (what was shared about them)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime

from audit import (
    LedgerError,
    LedgerVerifier,
    ReportError,
    build_report,
    cached_verifier,
    report_index,
    subject_access,
    whole_ledger_report,
)
from joinedup.errors import InvalidInput, NotFound
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import ServiceContext

log = logging.getLogger("joinedup.operations")


@dataclass(frozen=True)
class ReportRequest:
    start: str | None = None
    end: str | None = None


def verify(ctx: ServiceContext, caller: Caller) -> dict:
    with Action(ctx, caller, "audit.verify", purpose="oversight") as act:
        act.decide({})
        # The same answer as a full verify_ledger, at the cost of what changed since this
        # process last verified (the prefix it checked is re-tagged, not re-parsed).
        return _verifier(ctx).verify().to_dict()


def _verifier(ctx: ServiceContext) -> LedgerVerifier:
    settings = ctx.home.ledger_settings
    return cached_verifier(ctx.home.ledger_dir, ctx.ledger.public_key_path.read_bytes(),
                           checkpoint_every=settings.checkpoint_every,
                           witness=settings.witness)


def follow_ledger(ctx: ServiceContext, every: float = 1.0) -> threading.Thread:
    """Keep this process's ledger verifier and report index up to date in the background
    (a server's worker starts it), so that a request verifies or reports only what was
    appended in the last `every` seconds, never the whole ledger at once (the first
    request after a start, or after a busy spell). Nothing is disclosed here: answers
    still go only to requests the policy allowed, each recorded."""
    def run() -> None:
        seen = -1
        while True:
            try:
                size = len(ctx.ledger)
                if size != seen:
                    _verifier(ctx).verify()
                    report_index(ctx.ledger).catch_up(ctx.ledger)
                    seen = size
            except LedgerError:
                return  # the ledger was closed: the service is stopping
            except Exception as exc:  # noqa: BLE001 - the requests themselves still work
                log.warning("ledger follower: %s: %s", type(exc).__name__, exc)
            time.sleep(every)

    thread = threading.Thread(target=run, name="ledger-follower", daemon=True)
    thread.start()
    return thread


def report(ctx: ServiceContext, caller: Caller, request: ReportRequest) -> dict:
    """The governance report between two dates. A date that is not one is InvalidInput,
    naming the parameter, never quoting it."""
    with Action(ctx, caller, "audit.report.read", purpose="oversight") as act:
        problems = [(name, "not a date or time (YYYY-MM-DD or ISO 8601)")
                    for name, value in (("from", request.start), ("to", request.end))
                    if value is not None and not _is_iso(value)]
        if problems:
            raise InvalidInput("; ".join(f"{n}: {r}" for n, r in problems), problems)
        act.decide({})
        if request.start is None and request.end is None:
            # The whole ledger: folded as entries are appended, not scanned per request.
            return whole_ledger_report(ctx.ledger)
        try:
            return build_report(ctx.ledger, request.start, request.end)
        except ReportError as exc:
            raise InvalidInput("the report period is not valid",
                               [("from/to", type(exc).__name__)]) from None


def _is_iso(value: str) -> bool:
    for parse in (date.fromisoformat, lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))):
        try:
            parse(value)
            return True
        except ValueError:
            continue
    return False


def inclusion_proof(ctx: ServiceContext, caller: Caller, event_id: str) -> dict:
    with Action(ctx, caller, "audit.verify", purpose="oversight") as act:
        act.check_text({"event_id": event_id})
        act.decide({})
        try:
            return ctx.ledger.inclusion_proof(event_id)
        except (LedgerError, IndexError, KeyError, ValueError) as exc:
            raise NotFound(f"no event {event_id} in the ledger") from exc


def subject_access_request(ctx: ServiceContext, caller: Caller, identifiers: dict) -> dict:
    """Every disclosure about the person these identifiers name."""
    with Action(ctx, caller, "audit.subject_access", purpose="subject_access") as act:
        person_key = ctx.person_key(identifiers)
        act.decide({"person_key": person_key})
        return {"person_key": person_key, "disclosures": subject_access(ctx.ledger, person_key)}
