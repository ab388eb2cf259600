"""The one place where the pages reach the service: every page that shows or changes data
calls a function here, and each of them is an operation `(ctx, caller, request) -> result`
of the operations layer, or, until that layer has it, the same work through the existing
ServiceContext and collation functions that the HTTP API calls (so the decision and the
ledger entry are the API's). Switching to `joinedup.operations` is an edit of this file only.

The actions the API has no route for yet (a provider's answer to a referral, job outcomes,
self-reported barriers, an adviser's caseload, run comparison, decision lookup) are in
`interim_operations`, written in the same shape: decide, record, apply.
"""

from __future__ import annotations

from joinedup.pages.web import interim_operations as interim
from joinedup.service_context import NotFound, Refused, ServiceContext, referral_resource
from joinedup.users import User

# Re-exported: the pages use these names only through this module.
respond_to_referral = interim.respond_to_referral
record_outcome = interim.record_outcome
referral_statuses = interim.referral_statuses
caseload = interim.caseload
record_self_reported = interim.record_self_reported
self_reported = interim.self_reported
outcomes_by_provider = interim.outcomes_by_provider
find_decision = interim.find_decision
link_runs = interim.link_runs
run_changes = interim.run_changes
quality_report_html = interim.quality_report_html
ledger_status = interim.ledger_status
policy_register = interim.policy_register
trigger_questions = interim.trigger_questions
outcome_schedule = interim.outcome_schedule
refuse_page = interim.refuse_page
role_may = interim.role_may


def _collate():
    from joinedup import collate

    return collate


# -- adviser ----------------------------------------------------------------------------
def request_summary(ctx: ServiceContext, caller: User, identifiers: dict,
                    adjustment_gbp: float = 0.0, adjustment_reason: str | None = None) -> dict:
    """The API's POST /v1/summaries: matched (with the summary) / no_match / needs_review."""
    result = _collate().request_summary(ctx, caller.subject(), identifiers,
                                        adjustment_gbp=adjustment_gbp,
                                        adjustment_reason=adjustment_reason)
    if result.get("outcome") == "matched":  # the allowed request covers what they told us
        result["self_reported"] = self_reported(ctx, ctx.person_key(identifiers))
    return result


def consent_catalogue(ctx: ServiceContext):
    """The consent catalogue (versioned configuration, no person in it)."""
    return ctx.consent.catalogue


def grant_consent(ctx: ServiceContext, caller: User, identifiers: dict, purposes: list[str],
                  categories: list[str], notice_version: str) -> dict:
    """The API's POST /v1/consent."""
    return ctx.grant_consent(caller, identifiers, purposes, categories,
                             privacy_notice_version=notice_version,
                             collection_method="in_person_signed")


def withdraw_consent(ctx: ServiceContext, caller: User, receipt_id: str):
    """The API's POST /v1/consent/{id}/withdraw."""
    return ctx.withdraw_consent(caller, receipt_id)


def consent_receipt(ctx: ServiceContext, caller: User, receipt_id: str) -> dict:
    """The API's GET /v1/consent/{id}/receipt: the signed receipt, decided and recorded."""
    with ctx.one_entry():
        record = ctx.consent_record(receipt_id)
        ctx.decide(caller, "consent.record", {"person_key": record.person_key},
                   purpose=record.purposes[0] if record.purposes else None)
        return ctx.consent.receipt(receipt_id)


def consent_history(ctx: ServiceContext, caller: User, identifiers: dict) -> dict:
    """The person's consents and their append-only history (the CLI's `consent history`)."""
    with ctx.one_entry():
        person_key = ctx.person_key(identifiers)
        decision = ctx.decide(caller, "consent.record", {"person_key": person_key})
        records = [r.to_dict() for r in ctx.consent.records(person_key)]
        history = ctx.consent.history(person_key)
        ctx.audit(ctx.decision_event(decision, outcome="consent.history.read",
                                     person_key=person_key))
        return {"records": records, "history": history}


def create_referral(ctx: ServiceContext, caller: User, identifiers: dict, provider: str,
                    barriers: list[str]) -> dict:
    """The API's POST /v1/referrals."""
    return ctx.create_referral(caller, identifiers, provider, barriers,
                               "employment_support").public()


def providers(ctx: ServiceContext) -> dict[str, str]:
    """Provider organisations (policy data: public configuration)."""
    orgs = interim.policy_data(ctx).get("organisations", {})
    return {k: v["name"] for k, v in sorted(orgs.items()) if v.get("kind") == "provider"}


# -- provider ---------------------------------------------------------------------------
def referral_inbox(ctx: ServiceContext, caller: User) -> list[dict]:
    """The API's GET /v1/referrals (each referral decided, withdrawn consent drops it),
    with each one's status."""
    visible = []
    with ctx.one_entry():
        for referral in ctx.referrals_for(caller.organisation):
            decision = ctx.decide(caller, "referral.read", referral_resource(referral),
                                  purpose=referral.purpose,
                                  consent=ctx.consent_state(referral.person_key, referral.purpose),
                                  refuse=False)
            if decision.allow:
                visible.append(referral.public())
        if visible:
            ctx.audit({"type": "referral.listed", "actor": caller.subject(),
                       "provider": caller.organisation,
                       "referral_ids": [r["referral_id"] for r in visible]})
    statuses = referral_statuses(ctx, [r["referral_id"] for r in visible])
    for r in visible:
        r["status"] = statuses.get(r["referral_id"], {"status": "new"})
    return visible


def referral_summary(ctx: ServiceContext, caller: User, referral_id: str) -> dict:
    """The API's GET /v1/referrals/{id}: only the barriers the provider was asked about.
    "Absent" and "not yours" are the same answer (NotFound), after the policy's say."""
    try:
        referral = ctx.get_referral(referral_id)
    except NotFound:
        referral = None
    if referral is None or referral.provider != caller.organisation:
        with ctx.one_entry():
            ctx.decide(caller, "referral.read",
                       {"provider": caller.organisation, "referred_to": []})
        raise NotFound(f"no referral {referral_id} for {caller.organisation}")
    result = _collate().request_referral_summary(ctx, caller.subject(), referral)
    result["status"] = referral_statuses(ctx, [referral_id]).get(referral_id, {"status": "new"})
    return result


# -- governance -------------------------------------------------------------------------
def audit_report(ctx: ServiceContext, caller: User, start: str | None = None,
                 end: str | None = None) -> dict:
    """The API's GET /v1/audit/report."""
    with ctx.one_entry():
        ctx.decide(caller, "audit.report.read", {}, purpose="oversight")
        return ctx.audit_report(start, end)


def area_counts(ctx: ServiceContext, caller: User, level: str = "sector") -> dict:
    """The API's GET /v1/area-counts."""
    return _collate().request_area_counts(ctx, caller.subject(), level=level)


# -- citizen ----------------------------------------------------------------------------
class _Self(User):
    """A citizen acting for themselves: the policy's subject carries their person key."""

    person_key: str = ""

    def subject(self) -> dict:
        return {**super().subject(), "person_key": self.person_key}


def subject_access(ctx: ServiceContext, caller: User, identifiers: dict) -> dict:
    """The API's POST /v1/audit/subject-access, for the citizen themselves."""
    person_key = ctx.person_key(identifiers)
    asker: User = caller
    if caller.role == "citizen":
        asker = _Self(caller.id, caller.role, caller.organisation, caller.name)
        object.__setattr__(asker, "person_key", person_key)
    with ctx.one_entry():
        ctx.decide(asker, "audit.subject_access", {"person_key": person_key},
                   purpose="subject_access")
        return ctx.subject_access(person_key)


__all__ = ["NotFound", "Refused"]
