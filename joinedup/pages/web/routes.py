"""The pages of every role. Each reads its form, calls one `adapter` function (the
operations), and renders the answer; none decides, records or computes anything itself."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

import joinedup.pages.web.adapter as adapter
from joinedup.errors import Conflict, InvalidInput, Refused, Withheld
from joinedup.pages.web.framework import (
    HERE,
    Bounce,
    Page,
    identifiers_from,
    input_errors,
    page,
    start_page,
)
from joinedup.pages.web.review_routes import register as register_review_pages
from joinedup.pages.web.session import Session
from joinedup.users import AuthError

ASSETS = HERE.parent / "assets" / "node_modules" / "govuk-frontend" / "dist" / "govuk"
SEVERITY = {1: "Low", 2: "Medium", 3: "High"}


def mount_pages(app: FastAPI) -> None:
    """Add the pages and their assets (served by the service itself: no CDN)."""
    if ASSETS.is_dir():
        app.mount("/assets", StaticFiles(directory=ASSETS / "assets"), name="govuk-assets")
    router = APIRouter()
    _static_aliases(router)
    _common(router)
    _adviser(router)
    _provider(router)
    _governance(router)
    _data_officer(router)
    register_review_pages(router)
    _citizen(router)
    app.include_router(router)


def _static_aliases(router: APIRouter) -> None:
    files = {"/static/govuk-frontend.min.css": (ASSETS / "govuk-frontend.min.css", "text/css"),
             "/static/govuk-frontend.min.js": (ASSETS / "govuk-frontend.min.js", "text/javascript"),
             "/static/pages.css": (HERE / "static" / "pages.css", "text/css"),
             "/static/init.js": (HERE / "static" / "init.js", "text/javascript"),
             "/static/init-body.js": (HERE / "static" / "init-body.js", "text/javascript")}
    cache: dict[str, bytes] = {}

    def serve(path: Path, kind: str):
        def endpoint() -> Response:
            if str(path) not in cache:
                if not path.exists():
                    return Response("missing asset: run scripts/frontend.sh", 404,
                                    media_type="text/plain")
                cache[str(path)] = path.read_bytes()
            return Response(cache[str(path)], media_type=kind,
                            headers={"Cache-Control": "public, max-age=3600"})
        return endpoint

    for url, (path, kind) in files.items():
        router.add_api_route(url, serve(path, kind), methods=["GET"], include_in_schema=False)


# -- sign in and out ----------------------------------------------------------------------
def _common(router: APIRouter) -> None:
    @page(router, "/sign-in", None, methods=("GET", "POST"), signed_in=False)
    def sign_in(p: Page):
        target = p.query("next") or p.value("next")
        if not target.startswith("/") or target.startswith("//"):
            target = ""
        oidc = getattr(p.ctx.auth, "oidc", None) is not None
        if p.request.method == "GET":
            if p.user is not None:
                return p.redirect(target or start_page(p.ctx, p.user))
            return p.render("sign_in.html", title="Sign in", next=target, oidc=oidc)
        token = p.value("token")
        errors = []
        if not token:
            errors = [("token", "Enter your access token")]
        else:
            try:
                user = p.ctx.auth.authenticate(f"Bearer {token}")
            except AuthError:
                errors = [("token", "Enter a valid access token (this one is unknown, "
                                    "revoked or expired)")]
        if errors:
            return p.render("sign_in.html", 400, title="Sign in", next=target, oidc=oidc,
                            errors=errors)
        p.session = Session(token=token)  # a new session: new CSRF token, no carried state
        p.user = user
        return p.redirect(target or start_page(p.ctx, user))

    @page(router, "/sign-out", None, methods=("POST",))
    def sign_out(p: Page):
        p.session = Session()
        p.user = None
        return p.redirect("/sign-in", "You have signed out.")

    @page(router, "/pages", None)
    def home(p: Page):
        return p.render("home.html", title="Your pages")


def _person(p: Page) -> dict:
    if not p.session.person:
        raise Bounce(p.render("no_person.html", 409, title="Find the person first"))
    return p.session.person


def _summary_view(result: dict) -> dict:
    """The summary laid out for the page (labels, severity words): presentation only."""
    summary = result.get("summary") or {}
    found = {b["code"] for b in summary.get("barriers", ())}
    return {"summary": summary, "found": found,
            "no_record": [c for c in summary.get("categories_in_scope", ()) if c not in found],
            "severity": SEVERITY}


# -- adviser ------------------------------------------------------------------------------
def _adviser(router: APIRouter) -> None:
    roles = ("adviser",)

    @page(router, "/adviser/find", "summary.request", roles, methods=("GET", "POST"))
    def find(p: Page):
        if p.request.method == "GET":
            return p.render("adviser_find.html", title="Find the person", values={})
        identifiers, errors = identifiers_from(p)
        if errors:
            return p.render("adviser_find.html", 400, title="Find the person",
                            values=identifiers, errors=errors)
        p.session.person = identifiers
        try:
            result = adapter.request_summary(p.ctx, p.user, identifiers)
        except InvalidInput as exc:
            p.session.person = None
            return p.render("adviser_find.html", 400, title="Find the person",
                            values=identifiers, errors=input_errors(exc))
        except (Refused, Withheld) as exc:
            return p.render("adviser_find_result.html", 403, title="No summary for this person",
                            outcome="refused", reasons=getattr(exc, "reasons", [str(exc)]),
                            decision_id=exc.decision_id)
        if result.get("outcome") != "matched":
            return p.render("adviser_find_result.html", title="Find result", result=result,
                            outcome=result.get("outcome"))
        return p.render("adviser_person.html", title="Barrier summary", result=result,
                        matched_now=True, **_summary_view(result))

    @page(router, "/adviser/person", "summary.request", roles)
    def person(p: Page):
        result = p.call(adapter.request_summary, _person(p))
        if result.get("outcome") != "matched":
            return p.render("adviser_find_result.html", title="Find result", result=result,
                            outcome=result.get("outcome"))
        return p.render("adviser_person.html", title="Barrier summary", result=result,
                        **_summary_view(result))

    @page(router, "/adviser/person/print", "summary.request", roles)
    def person_print(p: Page):
        result = p.call(adapter.request_summary, _person(p))
        if result.get("outcome") != "matched":
            return p.redirect("/adviser/person")
        return p.render("adviser_person_print.html", title="Barrier summary (print)",
                        result=result, **_summary_view(result))

    @page(router, "/adviser/payment", "summary.request", roles, methods=("POST",))
    def payment(p: Page):
        who = _person(p)
        amount_text, reason = p.value("adjustment"), p.value("reason")
        errors = []
        try:
            amount = float(amount_text)
        except ValueError:
            amount = 0.0
            errors.append(("adjustment", "Enter the adjustment in pounds, for example 150 or -50"))
        if not reason:
            errors.append(("reason", "Enter the reason for the adjustment"))
        elif len(reason) > 500:
            errors.append(("reason", "The reason must be 500 characters or fewer"))
        if not errors:
            try:
                result = p.call(adapter.request_summary, who, amount, reason)
                return p.render("adviser_person.html", title="Barrier summary", result=result,
                                adjusted=True, **_summary_view(result))
            except InvalidInput as exc:
                errors = input_errors(exc, {"adjustment": "adjustment", "reason": "reason"})
        result = p.call(adapter.request_summary, who)
        return p.render("adviser_person.html", 400, title="Barrier summary", result=result,
                        errors=errors, form={"adjustment": amount_text, "reason": reason},
                        **_summary_view(result))

    @page(router, "/adviser/finish", "summary.request", roles, methods=("POST",))
    def finish(p: Page):
        p.session.person = None
        return p.redirect("/adviser/find", "You have finished with that person. Their details "
                          "are no longer held in this browser.")

    @page(router, "/adviser/consent", "consent.record", roles, methods=("GET", "POST"))
    def consent(p: Page):
        who = _person(p)
        catalogue = adapter.consent_catalogue(p.ctx)
        view = {"catalogue": catalogue, "person": who}
        if p.request.method == "GET":
            return p.render("adviser_consent.html", title="Record consent", chosen={}, **view)
        chosen = {"purposes": p.values("purposes"), "categories": p.values("categories"),
                  "notice": p.value("notice")}
        errors = []
        if not chosen["purposes"]:
            errors.append(("purposes", "Select what the person consents to"))
        if not chosen["categories"]:
            errors.append(("categories", "Select the records the person agrees may be shared"))
        if chosen["notice"] != catalogue.privacy_notice_version:
            errors.append(("notice", "Confirm the person has been given the privacy notice"))
        if not errors:
            try:
                done = p.call(adapter.grant_consent, who, chosen["purposes"],
                              chosen["categories"], catalogue.privacy_notice_version)
                return p.redirect(f"/adviser/consent/receipt/{quote(done['receipt_id'])}",
                                  "Consent recorded. Print the receipt for the person.")
            except InvalidInput as exc:
                errors = input_errors(exc, {"purposes": "purposes", "categories": "categories"})
        return p.render("adviser_consent.html", 400, title="Record consent", chosen=chosen,
                        errors=errors, **view)

    @page(router, "/adviser/consent/receipt/{receipt_id}", "consent.record", roles)
    def receipt(p: Page):
        receipt_id = p.request.path_params["receipt_id"]
        signed = p.call(adapter.consent_receipt, receipt_id)
        body = signed.get("receipt", signed) if isinstance(signed, dict) else {}
        return p.render("adviser_receipt.html", title="Consent receipt", body=body,
                        signed=signed, catalogue=adapter.consent_catalogue(p.ctx))

    @page(router, "/adviser/consent/history", "consent.record", roles)
    def history(p: Page):
        found = p.call(adapter.consent_history, _person(p))
        return p.render("adviser_history.html", title="Consent and its history", **found,
                        catalogue=adapter.consent_catalogue(p.ctx))

    @page(router, "/adviser/consent/withdraw", "consent.record", roles, methods=("POST",))
    def withdraw(p: Page):
        receipt_id = p.value("receipt_id")
        try:
            if not receipt_id:
                raise InvalidInput("receipt: choose the consent to withdraw")
            p.call(adapter.withdraw_consent, receipt_id)
        except (InvalidInput, Conflict) as exc:
            found = p.call(adapter.consent_history, _person(p))
            return p.render("adviser_history.html", 400, title="Consent and its history",
                            errors=[("withdraw", str(exc)[:1].upper() + str(exc)[1:])],
                            **found, catalogue=adapter.consent_catalogue(p.ctx))
        return p.redirect("/adviser/consent/history", "Consent withdrawn. From now on no "
                          "summary of this person is shown to anyone.")

    @page(router, "/adviser/self-report", "barrier.self_report", roles, methods=("GET", "POST"))
    def self_report(p: Page):
        who = _person(p)
        questions = adapter.trigger_questions(p.ctx)
        if p.request.method == "GET":
            return p.render("adviser_self_report.html", title="Trigger questions",
                            questions=questions, chosen=[])
        chosen = p.values("answers")
        try:
            p.call(adapter.record_self_reported, who, chosen)
        except InvalidInput as exc:
            return p.render("adviser_self_report.html", 400, title="Trigger questions",
                            questions=questions, chosen=chosen,
                            errors=input_errors(exc, {"questions": "answers"}))
        return p.redirect("/adviser/person", "Self-reported barriers recorded.")

    @page(router, "/adviser/refer", "referral.create", roles, methods=("GET", "POST"))
    def refer(p: Page):
        who = _person(p)
        providers = adapter.providers(p.ctx)
        result = p.call(adapter.request_summary, who)
        if result.get("outcome") != "matched":
            return p.redirect("/adviser/person")
        view = {"providers": providers, "result": result, **_summary_view(result)}
        if p.request.method == "GET":
            return p.render("adviser_refer.html", title="Refer to a provider", chosen={}, **view)
        chosen = {"provider": p.value("provider"), "barriers": p.values("barriers")}
        errors = []
        if chosen["provider"] not in providers:
            errors.append(("provider", "Select the provider to refer the person to"))
        if not chosen["barriers"]:
            errors.append(("barriers", "Select the barriers the provider is asked to address"))
        if not errors:
            try:
                referral = p.call(adapter.create_referral, who, chosen["provider"],
                                  chosen["barriers"])
                return p.render("adviser_referred.html", title="Referral sent",
                                referral=referral, providers=providers, **_summary_view(result))
            except InvalidInput as exc:
                errors = input_errors(exc, {"provider": "provider", "barriers": "barriers"})
        return p.render("adviser_refer.html", 400, title="Refer to a provider", chosen=chosen,
                        errors=errors, **view)

    @page(router, "/adviser/caseload", "referral.track", roles)
    def caseload(p: Page):
        rows = p.call(adapter.caseload)
        return p.render("adviser_caseload.html", title="Your caseload", rows=rows,
                        providers=adapter.providers(p.ctx))

    @page(router, "/adviser/caseload/print", "referral.track", roles)
    def caseload_print(p: Page):
        rows = p.call(adapter.caseload)
        return p.render("adviser_caseload.html", title="Your caseload (print)", rows=rows,
                        providers=adapter.providers(p.ctx), printing=True)


# -- provider -----------------------------------------------------------------------------
def _provider(router: APIRouter) -> None:
    roles = ("provider",)

    @page(router, "/provider/referrals", "referral.read", roles)
    def inbox(p: Page):
        rows = p.call(adapter.referral_inbox)
        return p.render("provider_inbox.html", title="Referrals", rows=rows)

    def show(p: Page, status: int = 200, errors=None, form=None):
        referral_id = p.request.path_params["referral_id"]
        result = p.call(adapter.referral_summary, referral_id)
        schedule = adapter.outcome_schedule(p.ctx)
        return p.render("provider_referral.html", status, title="Referral", result=result,
                        referral_id=referral_id, schedule=schedule, errors=errors,
                        form=form or {}, **_summary_view(result))

    @page(router, "/provider/referrals/{referral_id}", "referral.read", roles)
    def referral(p: Page):
        return show(p)

    @page(router, "/provider/referrals/{referral_id}/respond", "referral.respond", roles,
          methods=("POST",))
    def respond(p: Page):
        referral_id = p.request.path_params["referral_id"]
        answer, reason = p.value("answer"), p.value("reason")
        if answer not in ("accept", "decline"):
            return show(p, 400, [("answer", "Select whether you accept or decline the referral")],
                        {"reason": reason})
        try:
            p.call(adapter.respond_to_referral, referral_id, answer == "accept", reason)
        except InvalidInput as exc:
            return show(p, 400, input_errors(exc, {"reason": "reason", "referral": "answer"}),
                        {"answer": answer, "reason": reason})
        return p.redirect(f"/provider/referrals/{quote(referral_id)}",
                          f"Referral {'accepted' if answer == 'accept' else 'declined'}.")

    @page(router, "/provider/referrals/{referral_id}/outcome", "outcome.record", roles,
          methods=("POST",))
    def outcome(p: Page):
        referral_id = p.request.path_params["referral_id"]
        milestone, on = p.value("milestone"), p.value("date")
        errors = []
        if not milestone:
            errors.append(("milestone", "Select the outcome"))
        if not on:
            errors.append(("date", "Enter the date of the outcome"))
        if not errors:
            try:
                p.call(adapter.record_outcome, referral_id, milestone, on)
                return p.redirect(f"/provider/referrals/{quote(referral_id)}", "Outcome recorded.")
            except InvalidInput as exc:
                errors = input_errors(exc, {"milestone": "milestone", "date": "date",
                                            "referral": "milestone"})
        return show(p, 400, errors, {"milestone": milestone, "date": on})


# -- governance board ---------------------------------------------------------------------
def _download(name: str, fmt: str, rows: list[dict], doc: dict) -> Response:
    if fmt == "json":
        body, kind = json.dumps(doc, indent=2, default=str), "application/json"
    else:
        out = io.StringIO()
        columns = list(rows[0].keys()) if rows else ["none"]
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "suppressed" if v is None else v for k, v in row.items()})
        body, kind = out.getvalue(), "text/csv"
    return Response(body, media_type=kind,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def _governance(router: APIRouter) -> None:
    roles = ("governance",)

    @page(router, "/governance/ledger", "audit.verify", roles)
    def ledger(p: Page):
        return p.render("gov_ledger.html", title="Audit ledger", ledger=p.call(adapter.ledger_status))

    @page(router, "/governance/accesses", "audit.report.read", roles)
    def accesses(p: Page):
        return p.render("gov_accesses.html", title="Accesses", report=p.call(adapter.audit_report))

    @page(router, "/governance/denials", "audit.report.read", roles)
    def denials(p: Page):
        return p.render("gov_denials.html", title="Denials", report=p.call(adapter.audit_report))

    @page(router, "/governance/withdrawals", "audit.report.read", roles)
    def withdrawals(p: Page):
        return p.render("gov_withdrawals.html", title="Consent withdrawals",
                        report=p.call(adapter.audit_report))

    @page(router, "/governance/decisions", "audit.report.read", roles)
    def decisions(p: Page):
        decision_id = p.query("decision_id")
        if "decision_id" not in p.request.query_params:
            return p.render("gov_decision.html", title="Look up a decision", found=None, value="")
        errors = []
        if not decision_id:
            errors = [("decision_id", "Enter a decision id")]
        elif len(decision_id) > 100 or not all(c.isalnum() or c in "-_." for c in decision_id):
            errors = [("decision_id", "Enter a decision id as it is printed, for example "
                                      "dec-0123abcd")]
        if errors:
            return p.render("gov_decision.html", 400, title="Look up a decision", found=None,
                            value=decision_id, errors=errors)
        try:
            found = adapter.find_decision(p.ctx, p.user, decision_id)
        except (adapter.NotFound, InvalidInput):
            return p.render("gov_decision.html", 404, title="Look up a decision", found=None,
                            value=decision_id,
                            errors=[("decision_id", "No decision with this id is in the ledger")])
        return p.render("gov_decision.html", title="Decision " + decision_id, found=found,
                        value=decision_id)

    @page(router, "/governance/area-counts", "area_counts.read", roles)
    def area_counts(p: Page):
        level = p.query("level") or "sector"
        if level not in ("sector", "district", "ward", "lsoa"):
            return p.render("gov_area_counts.html", 400, title="Area counts", result=None,
                            level=level, errors=[("level", "Choose an area level from the list")])
        result = p.call(adapter.area_counts, level)
        return p.render("gov_area_counts.html", title="Area counts", result=result, level=level)

    @page(router, "/governance/outcomes", "audit.report.read", roles)
    def outcomes(p: Page):
        return p.render("gov_outcomes.html", title="Outcomes by provider",
                        result=p.call(adapter.outcomes_by_provider))

    @page(router, "/governance/register", "audit.report.read", roles)
    def register(p: Page):
        return p.render("gov_register.html", title="Agreements and versions",
                        register=p.call(adapter.policy_register))

    @page(router, "/governance/download/{name}.{fmt}", "audit.report.read", roles)
    def download(p: Page):
        name, fmt = p.request.path_params["name"], p.request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            return p.render("not_found.html", 404, title="Not found", message="No such download")
        if name == "accesses":
            report = p.call(adapter.audit_report)
            rows = [{"dimension": dim, "value": k, "accesses": v}
                    for dim in ("by_role", "by_organisation", "by_purpose")
                    for k, v in report["accesses"][dim].items()]
            return _download(name, fmt, rows, report)
        if name == "denials":
            report = p.call(adapter.audit_report)
            rows = [{**d, "reasons": "; ".join(d["reasons"])} for d in report["denials"]["recent"]]
            return _download(name, fmt, rows, report["denials"])
        if name == "outcomes":
            result = p.call(adapter.outcomes_by_provider)
            return _download(name, fmt, result["rows"], result)
        if name == "area-counts":
            if not adapter.role_may(p.ctx, p.user, "area_counts.read"):
                p.call(adapter.refuse_page, "area_counts.read", None)
            result = p.call(adapter.area_counts, p.query("level") or "sector")
            doc = {k: v for k, v in result.items() if k != "csv"}
            if fmt == "csv":
                return Response(result["csv"], media_type="text/csv", headers={
                    "Content-Disposition": f'attachment; filename="{name}.csv"'})
            return _download(name, fmt, result["rows"], doc)
        return p.render("not_found.html", 404, title="Not found", message="No such download")


# -- data officer -------------------------------------------------------------------------
def _data_officer(router: APIRouter) -> None:
    roles = ("data_officer",)

    @page(router, "/data/runs", "linkage.report.read", roles)
    def runs(p: Page):
        return p.render("data_runs.html", title="Link runs", found=p.call(adapter.link_runs))

    @page(router, "/data/quality", "linkage.report.read", roles)
    def quality(p: Page):
        try:
            chosen = p.call(adapter.link_run, p.query("run") or None)
        except InvalidInput:  # not a run's name: no such run, as for an unknown name
            return p.render("not_found.html", 404, title="Not found", message="No such link run")
        return p.render("data_quality.html", title=f"Linkage quality: {chosen['run']}", run=chosen)

    @page(router, "/data/quality/report", "linkage.report.read", roles)
    def quality_report(p: Page):
        html = p.call(adapter.quality_report_html, p.query("run") or None)
        # Splink's own report (its inline scripts need a looser policy than our pages).
        return Response(html, media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self' 'unsafe-inline' data:; "
                                       "frame-ancestors 'none'"})

    @page(router, "/data/changes", "linkage.report.read", roles)
    def changes(p: Page):
        found = p.call(adapter.link_runs)
        names = [r["run"] for r in found["runs"]]
        before, after = p.query("before"), p.query("after")
        if "before" not in p.request.query_params:
            return p.render("data_changes.html", title="Changes between runs", names=names,
                            result=None, before=names[-2] if len(names) > 1 else "",
                            after=found["current"] or "")
        errors = []
        if before not in names:
            errors.append(("before", "Choose the earlier run"))
        if after not in names:
            errors.append(("after", "Choose the later run"))
        if errors:
            return p.render("data_changes.html", 400, title="Changes between runs", names=names,
                            result=None, before=before, after=after, errors=errors)
        result = p.call(adapter.run_changes, before, after)
        return p.render("data_changes.html", title="Changes between runs", names=names,
                        result=result, before=before, after=after)


# -- citizen ------------------------------------------------------------------------------
def _citizen(router: APIRouter) -> None:
    @page(router, "/citizen/access", "audit.subject_access", ("citizen",),
          methods=("GET", "POST"))
    def access(p: Page):
        if p.request.method == "GET":
            return p.render("citizen_access.html", title="What was shared about you",
                            values={}, report=None)
        identifiers, errors = identifiers_from(p)
        receipt = p.value("receipt")
        if not receipt:
            errors.append(("receipt", "Enter the reference on your consent receipt"))
        if not errors:
            try:
                report = p.call(adapter.subject_access, identifiers, receipt)
                return p.render("citizen_access.html", title="What was shared about you",
                                values={}, report=report)
            except InvalidInput as exc:
                errors = input_errors(exc, {"receipt": "receipt"})
        return p.render("citizen_access.html", 400, title="What was shared about you",
                        values=identifiers, report=None, errors=errors)
