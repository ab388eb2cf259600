"""joinedup.operations: one function per user action, `(ctx, caller, request) -> result`.

The HTTP API, the CLI, the web pages and the demo all call these; none of them decides,
records or applies anything itself. Open the context with `open_service(home)` (it also
finishes what a crash interrupted), authenticate the caller in the front end (a `Caller`,
i.e. joinedup.users.User), build the typed request and call the action.

Every action follows ONE protocol (joinedup/operations/protocol.py, class `Action`):

1. authenticate: done by the front end before the action runs;
2. decide: the policy engine only; default deny. The policy decides before the person is
   looked up in the linked data;
3. record: the action's ONE ledger entry. An action that changes state writes its effect
   event first, carrying everything needed to apply it again, with the decision inside;
4. apply: idempotently, keyed by the event's ids (consent rows, referral rows,
   runs/CURRENT);
5. commit: the result goes back. A crash between 3 and 5 is finished by
   `recovery.recover` when the service next opens: never an effect without its event.

Whatever the outcome (allowed, refused, not found, invalid, failed) an action leaves
exactly one ledger entry. Outcomes other than success are the exceptions in
joinedup/errors.py: `Refused` (the caller may know the reasons), `Withheld` (refused or not
found, told the same way to a role that may not know which), `NotFound`, `InvalidInput`
(422; also for identifier-looking text in a free-text or code field, recorded redacted),
`Conflict` (409), `NotAvailable`. Consent status is told only to an adviser of an
organisation holding the consent.

Actions:
    consent.grant_consent(ctx, caller, GrantConsent) -> ConsentGranted
    consent.withdraw_consent(ctx, caller, WithdrawConsent) -> ConsentWithdrawn
    consent.read_receipt(ctx, caller, ReadReceipt) -> dict (signed receipt)
    summaries.request_summary(ctx, caller, SummaryRequest) -> SummaryResult
    referrals.create_referral(ctx, caller, CreateReferral) -> Referral
    referrals.list_referrals(ctx, caller) -> list[dict]
    referrals.read_referral(ctx, caller, ReadReferral) -> ReferralSummary
    area_counts.request_area_counts(ctx, caller, AreaCountsRequest) -> dict
    audit.verify / report / inclusion_proof / subject_access_request
    linkage.status / report_html / commit_run / rollback_run
    review.review_queue / show_pair / label_pair / why_in_entity / accuracy / sample
"""

from __future__ import annotations

from joinedup.home import Home
from joinedup.operations import area_counts, audit, consent, linkage, referrals, summaries
from joinedup.operations.area_counts import AreaCountsRequest, request_area_counts
from joinedup.operations.consent import (
    ConsentGranted,
    ConsentWithdrawn,
    GrantConsent,
    ReadReceipt,
    WithdrawConsent,
    grant_consent,
    read_receipt,
    withdraw_consent,
)
from joinedup.operations.protocol import Action, Caller
from joinedup.operations.recovery import recover
from joinedup.operations.referrals import (
    CreateReferral,
    ReadReferral,
    Referral,
    create_referral,
    list_referrals,
    read_referral,
)
from joinedup.operations.summaries import SummaryRequest, SummaryResult, request_summary
from joinedup.service_context import ServiceContext


def open_service(home: Home, shared: bool = False) -> ServiceContext:
    """The service context of a home, with any action a crash interrupted finished."""
    ctx = ServiceContext(home, shared=shared)
    try:
        recover(ctx)
    except BaseException:
        ctx.close()
        raise
    return ctx


__all__ = [
    "Action",
    "AreaCountsRequest",
    "Caller",
    "ConsentGranted",
    "ConsentWithdrawn",
    "CreateReferral",
    "GrantConsent",
    "ReadReceipt",
    "ReadReferral",
    "Referral",
    "ServiceContext",
    "SummaryRequest",
    "SummaryResult",
    "WithdrawConsent",
    "area_counts",
    "audit",
    "consent",
    "create_referral",
    "grant_consent",
    "linkage",
    "list_referrals",
    "open_service",
    "read_receipt",
    "read_referral",
    "recover",
    "referrals",
    "request_area_counts",
    "request_summary",
    "summaries",
    "withdraw_consent",
]
