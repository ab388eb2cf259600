"""The one place where the pages reach the service: every page that shows or changes data
calls a function here, and each is an operation of `joinedup.operations`
`(ctx, caller, request) -> result`, the same the HTTP API and the CLI call, so a page's
decision and ledger entry are the API's. Results are turned into plain dicts for templates.

The actions the operations layer has no function for yet (a provider's answer to a
referral, job outcomes, self-reported barriers, an adviser's caseload, run comparison,
decision lookup) are in `interim_operations`, written with the same `Action` protocol.
"""

from __future__ import annotations

import hmac

import joinedup.pages.web.interim_operations as interim
from joinedup import operations as ops
from joinedup.errors import InvalidInput, NotFound, Refused, Withheld
from joinedup.operations.protocol import Action
from joinedup.service_context import ServiceContext
from joinedup.users import User

# Re-exported: the pages use these names only through this module.
respond_to_referral = interim.respond_to_referral
record_outcome = interim.record_outcome
referral_statuses = interim.referral_statuses
caseload = interim.caseload
record_self_reported = interim.record_self_reported
outcomes_by_provider = interim.outcomes_by_provider
find_decision = interim.find_decision
run_changes = interim.run_changes
quality_report_html = interim.quality_report_html
ledger_status = interim.ledger_status
policy_register = interim.policy_register
payment_due = interim.payment_due
trigger_questions = interim.trigger_questions
outcome_schedule = interim.outcome_schedule
refuse_page = interim.refuse_page
role_may = interim.role_may


# -- data officer -------------------------------------------------------------------------
def link_runs(ctx: ServiceContext, caller: User) -> dict:
    """`joinedup runs list`: every finished run, its figures, and which one is current."""
    return ops.linkage.list_runs(ctx, caller)


def link_run(ctx: ServiceContext, caller: User, run: str | None = None) -> dict:
    """`joinedup runs show`: one run's summary and entity changes (default: the current)."""
    return ops.linkage.show_run(ctx, caller, ops.linkage.RunRequest(run))


# -- adviser ----------------------------------------------------------------------------
def request_summary(ctx: ServiceContext, caller: User, identifiers: dict,
                    adjustment_gbp: float = 0.0, adjustment_reason: str | None = None) -> dict:
    """POST /v1/summaries: matched (with the summary) / no_match / needs_review; plus the
    person's self-reported barriers when the summary was allowed and matched."""
    result = ops.request_summary(ctx, caller, ops.SummaryRequest(
        identifiers, adjustment_gbp=adjustment_gbp, adjustment_reason=adjustment_reason))
    doc = result.to_dict()
    if result.outcome == "matched":  # the allowed request covers what the person told us
        doc["self_reported"] = interim.self_reported(ctx, ctx.person_key(identifiers))
    return doc


def consent_catalogue(ctx: ServiceContext):
    """The consent catalogue (versioned configuration, no person in it)."""
    return ctx.consent.catalogue


def grant_consent(ctx: ServiceContext, caller: User, identifiers: dict, purposes: list[str],
                  categories: list[str], notice_version: str) -> dict:
    """POST /v1/consent."""
    granted = ops.grant_consent(ctx, caller, ops.GrantConsent(
        identifiers, purposes, categories, privacy_notice_version=notice_version,
        collection_method="in_person_signed"))
    return {"receipt_id": granted.receipt_id, "receipt": granted.receipt}


def withdraw_consent(ctx: ServiceContext, caller: User, receipt_id: str) -> dict:
    """POST /v1/consent/{id}/withdraw."""
    done = ops.withdraw_consent(ctx, caller, ops.WithdrawConsent(receipt_id))
    return {"receipt_id": done.receipt_id, "withdrawn_at": done.withdrawn_at}


def consent_receipt(ctx: ServiceContext, caller: User, receipt_id: str) -> dict:
    """GET /v1/consent/{id}/receipt: the signed receipt."""
    return ops.read_receipt(ctx, caller, ops.ReadReceipt(receipt_id))


def consent_history(ctx: ServiceContext, caller: User, identifiers: dict) -> dict:
    """`joinedup consent history`: the consents the caller's organisation holds, each as it
    stands now (the last event of its receipt), and their append-only history."""
    history = ops.consent.consent_history(ctx, caller, identifiers)
    latest: dict[str, dict] = {}
    for event in history:
        latest[event["receipt_id"]] = event["record"]
    return {"records": list(latest.values()), "history": history}


def create_referral(ctx: ServiceContext, caller: User, identifiers: dict, provider: str,
                    barriers: list[str]) -> dict:
    """POST /v1/referrals."""
    return ops.create_referral(ctx, caller, ops.CreateReferral(identifiers, provider,
                                                              barriers)).public()


def providers(ctx: ServiceContext) -> dict[str, str]:
    """Provider organisations (policy data: public configuration)."""
    orgs = interim.policy_data(ctx).get("organisations", {})
    return {k: v["name"] for k, v in sorted(orgs.items()) if v.get("kind") == "provider"}


# -- provider ---------------------------------------------------------------------------
def referral_inbox(ctx: ServiceContext, caller: User) -> list[dict]:
    """GET /v1/referrals (each decided; a withdrawn consent drops it), with statuses."""
    visible = ops.list_referrals(ctx, caller)
    statuses = referral_statuses(ctx, [r["referral_id"] for r in visible])
    for r in visible:
        r["status"] = statuses.get(r["referral_id"], {"status": "new", "outcomes": {}})
    return visible


def referral_summary(ctx: ServiceContext, caller: User, referral_id: str) -> dict:
    """GET /v1/referrals/{id}: only the barriers the provider was asked about; absent and
    "not yours" are the same answer."""
    read = ops.read_referral(ctx, caller, ops.ReadReferral(referral_id))
    doc = read.summary.to_dict()
    doc["referral"] = read.referral.public()
    doc["status"] = referral_statuses(ctx, [referral_id]).get(
        referral_id, {"status": "new", "outcomes": {}})
    doc["payment"] = payment_due(ctx, doc["summary"], doc["status"])
    return doc


# -- governance -------------------------------------------------------------------------
def audit_report(ctx: ServiceContext, caller: User, start: str | None = None,
                 end: str | None = None) -> dict:
    """GET /v1/audit/report."""
    return ops.audit.report(ctx, caller, ops.audit.ReportRequest(start, end))


def area_counts(ctx: ServiceContext, caller: User, level: str = "sector") -> dict:
    """GET /v1/area-counts."""
    return ops.request_area_counts(ctx, caller, ops.AreaCountsRequest(level=level))


# -- citizen ----------------------------------------------------------------------------
class _Self(User):
    """A citizen acting for themselves: the policy's subject carries their person key."""

    person_key: str = ""

    def subject(self) -> dict:
        return {**super().subject(), "person_key": self.person_key}


def subject_access(ctx: ServiceContext, caller: User, identifiers: dict,
                   receipt_id: str) -> dict:
    """POST /v1/audit/subject-access, for a citizen themselves. The citizen shows they are
    the person by two things: their identifiers and the reference on a consent receipt they
    were given (a 128-bit random id); only then does the policy's subject carry their
    person key (the policy allows a citizen only their own report)."""
    person_key = ctx.person_key(identifiers)
    asker: User = caller
    if caller.role == "citizen":
        try:
            holder = ctx.consent.record(receipt_id).person_key if receipt_id else ""
        except Exception:  # noqa: BLE001 - unknown receipt: the same answer as a wrong one
            holder = ""
        if not hmac.compare_digest(holder, person_key):
            message = "the receipt reference and the details do not match a consent you gave"
            with Action(ctx, caller, "audit.subject_access", purpose="subject_access"):
                raise InvalidInput(f"receipt: {message}", [("receipt", message)])  # recorded
        asker = _Self(caller.id, caller.role, caller.organisation, caller.name)
        object.__setattr__(asker, "person_key", person_key)
    result = ops.audit.subject_access_request(ctx, asker, identifiers)
    return result["disclosures"]


__all__ = ["InvalidInput", "NotFound", "Refused", "Withheld"]


# -- data officer: clerical review (joinedup.operations.review) ---------------------------
def review_queue(ctx: ServiceContext, caller: User, limit: int = 20) -> dict:
    from joinedup.operations import review

    return review.review_queue(ctx, caller, review.QueueRequest(limit))


def review_pair(ctx: ServiceContext, caller: User, pair_id: str) -> dict:
    from joinedup.operations import review

    return review.show_pair(ctx, caller, review.PairRequest(pair_id))


def label_pair(ctx: ServiceContext, caller: User, pair_id: str, label: str,
               purpose: str = "queue") -> dict:
    from joinedup.operations import review

    return review.label_pair(ctx, caller, review.LabelPair(pair_id, label, purpose))


def compare_records(ctx: ServiceContext, caller: User, left: tuple[str, str],
                    right: tuple[str, str]) -> dict:
    """Any two records of the current run, linked or not (review.show_pair). A record the
    run does not hold is a problem of the form's field, not a missing page."""
    from joinedup.errors import InvalidInput
    from joinedup.operations import review

    try:
        return review.show_pair(ctx, caller, review.RecordsPairRequest(left, right))
    except review.RecordNotInRun as exc:
        raise InvalidInput(str(exc), [(f"{exc.side}_ref", "There is no record with this source and "
                                                          "reference in the current run")]) from exc


def label_records(ctx: ServiceContext, caller: User, left: tuple[str, str],
                  right: tuple[str, str], label: str) -> dict:
    """Label two records of the current run as a pair (review.label_pair by records)."""
    from joinedup.operations import review

    return review.label_pair(ctx, caller, review.LabelPair("", label, "queue", left, right))


def next_review_pair(ctx: ServiceContext, caller: User) -> str | None:
    from joinedup.operations import review

    return review.next_pair(ctx, caller)


def sample_review_pair(ctx: ServiceContext, caller: User, stratum: str) -> dict | None:
    from joinedup.operations import review

    return review.sample(ctx, caller, review.SampleRequest(stratum))


def why_in_entity(ctx: ServiceContext, caller: User, source: str, ref: str) -> dict:
    from joinedup.operations import review

    return review.why_in_entity(ctx, caller, review.WhyRequest(source, ref))
