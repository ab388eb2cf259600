"""The pages' plumbing: sessions, sign-in, CSRF, role checks, templates, and the `page`
decorator every route uses. Pages hold no logic of their own: they read a form, call one
function of `adapter`, and render what it returns.

A page names the policy action it serves. A signed-in user whose role is not granted that
action gets a refusal page, and the refusal is decided and recorded as the API's is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

import joinedup.pages.web.adapter as adapter
from joinedup.errors import (
    Conflict,
    InvalidIdentifiers,
    InvalidInput,
    NotAvailable,
    NotFound,
    Refused,
    Withheld,
)
from joinedup.pages.web.session import COOKIE, Session, SessionCodec, cookie_settings
from joinedup.service_context import ServiceContext
from joinedup.users import AuthError, User

log = logging.getLogger("joinedup.pages")
HERE = Path(__file__).parent
ROLE_TITLES = {"adviser": "Citizen Support adviser", "provider": "Provider caseworker",
               "governance": "Governance board member", "data_officer": "Data officer",
               "citizen": "Citizen", "admin": "Administrator"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' "
                               "'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _failed(errors, name: str) -> bool:
    return any(f == name for f, _ in errors or [])


templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True,
                        lstrip_blocks=True)
templates.globals["m_failed"] = _failed
templates.globals.update(
    purpose_options=lambda cat: [(k, v["title"]) for k, v in cat.purposes.items()],
    category_options=lambda cat: [
        (k, v["title"] + (" (special category)" if v.get("special_category") else ""))
        for k, v in cat.categories.items()],
    titles=lambda cat, codes: [cat.category_title(c) for c in codes],
    outcome_options=lambda sch, st: [(k, v["title"]) for k, v in sch.milestones.items()
                                     if k not in st.get("outcomes", {})],
    flat_items=lambda doc: [(k, v) for k, v in (doc or {}).items()
                            if not isinstance(v, dict | list)],
    chart_column=lambda result: {row["area"]: row.get("multiple_disadvantage")
                                 for row in result["rows"]},
    event_words={"summary.disclosed": "A summary of your barriers was shown to an adviser",
                 "referral.read": "A provider read your referral",
                 "referral.created": "You were referred to a provider",
                 "consent.granted": "You gave consent", "consent.withdrawn": "You withdrew consent",
                 "policy.decision": "A request about you was decided",
                 "barrier.self_reported": "Barriers you told us about were recorded",
                 "outcome.recorded": "A job outcome was recorded",
                 "referral.accepted": "A provider accepted your referral",
                 "referral.declined": "A provider declined your referral"},
    question_options=lambda qs: [(q["id"], q["text"]) for q in qs.questions],
    barrier_options=lambda summary: [
        (b["code"], f'{b["label"]} (severity {b["severity"]})') for b in summary["barriers"]],
)
templates.globals["m"] = templates.get_template("_macros.html").module


class Bounce(Exception):
    """Leave the page now with this response (a redirect, a refusal page)."""

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass
class Page:
    """One request to one page: who, what they sent, and how to answer."""

    request: Request
    ctx: ServiceContext
    session: Session
    user: User | None
    form: dict[str, list[str]] = field(default_factory=dict)
    path: str = ""

    def value(self, name: str) -> str:
        return (self.form.get(name) or [""])[0].strip()

    def values(self, name: str) -> list[str]:
        return [v for v in self.form.get(name, []) if v]

    def query(self, name: str) -> str:
        return (self.request.query_params.get(name) or "").strip()

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        flash, self.session.flash = self.session.flash, None
        html = templates.get_template(template).render(
            user=self.user, csrf=self.session.csrf, flash=flash, active=self.path,
            nav=navigation(self.ctx, self.user), role_title=ROLE_TITLES.get(
                self.user.role if self.user else "", ""), errors=values.pop("errors", None),
            **values)
        return HTMLResponse(html, status)

    def redirect(self, to: str, flash: str | None = None) -> RedirectResponse:
        if flash:
            self.session.flash = flash
        return RedirectResponse(to, 303)

    def call(self, operation: Callable, *args: Any, **kwargs: Any) -> Any:
        """An operation of the adapter; a refusal, an absence or a missing piece becomes its
        page. Bad input (InvalidInput) and a conflict are left to the page, to show on the
        form."""
        try:
            return operation(self.ctx, self.user, *args, **kwargs)
        except Refused as exc:
            raise Bounce(self.render("refused.html", 403, title="You cannot do this",
                                     reasons=exc.reasons, decision_id=exc.decision_id)) from exc
        except Withheld as exc:
            raise Bounce(self.render("refused.html", 403, title="You cannot do this",
                                     reasons=[str(exc)], decision_id=exc.decision_id)) from exc
        except NotFound as exc:
            raise Bounce(self.render("not_found.html", 404, title="Not found",
                                     message=str(exc))) from exc
        except NotAvailable as exc:
            raise Bounce(self.render("not_found.html", 503, title="Not available yet",
                                     message=f"Not available yet: {exc}")) from exc


# -- who may see which page ---------------------------------------------------------------
# (path, label, action): the menu of a role is the pages whose action its role is granted.
MENU: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("/adviser/find", "Find a person", "summary.request", ("adviser",)),
    ("/adviser/caseload", "Caseload", "referral.track", ("adviser",)),
    ("/provider/referrals", "Referrals", "referral.read", ("provider",)),
    ("/governance/ledger", "Ledger", "audit.verify", ("governance",)),
    ("/governance/accesses", "Accesses", "audit.report.read", ("governance",)),
    ("/governance/denials", "Denials", "audit.report.read", ("governance",)),
    ("/governance/withdrawals", "Withdrawals", "audit.report.read", ("governance",)),
    ("/governance/decisions", "Decisions", "audit.report.read", ("governance",)),
    ("/governance/area-counts", "Area counts", "area_counts.read", ("governance",)),
    ("/governance/outcomes", "Outcomes", "audit.report.read", ("governance",)),
    ("/governance/register", "Register", "audit.report.read", ("governance",)),
    ("/data/runs", "Link runs", "linkage.report.read", ("data_officer",)),
    ("/data/changes", "Changes between runs", "linkage.report.read", ("data_officer",)),
    ("/data/review", "Review queue", "linkage.review", ("data_officer",)),
    ("/citizen/access", "What was shared about me", "audit.subject_access", ("citizen",)),
]


def navigation(ctx: ServiceContext, user: User | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    return [(path, label) for path, label, action, roles in MENU
            if user.role in roles and adapter.role_may(ctx, user, action)]


def start_page(ctx: ServiceContext, user: User) -> str:
    nav = navigation(ctx, user)
    return nav[0][0] if nav else "/pages"


# -- the decorator -----------------------------------------------------------------------
def _codec(ctx: ServiceContext) -> SessionCodec:
    codec = getattr(ctx, "_pages_codec", None)
    if codec is None:
        codec = SessionCodec(ctx.keyring.key("web-session-v1"))
        ctx._pages_codec = codec  # type: ignore[attr-defined]
    return codec


def _authenticate(ctx: ServiceContext, session: Session) -> User | None:
    if not session.token:
        return None
    try:
        return ctx.auth.authenticate(f"Bearer {session.token}")
    except AuthError:
        return None


async def _read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (the body is already capped by the app's BodyLimit)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True, max_num_fields=200)


def page(router, path: str, action: str | None, roles: tuple[str, ...] = (),
         methods: tuple[str, ...] = ("GET",), purpose: str | None = None,
         signed_in: bool = True) -> Callable:
    """Register a page. `action`: the policy action it serves (None: any signed-in user);
    `roles`: the roles it is for (besides the policy granting the action)."""

    def register(handler: Callable[[Page], Response]) -> Callable:
        async def endpoint(request: Request) -> Response:
            ctx: ServiceContext = request.app.state.ctx
            codec = _codec(ctx)
            session = codec.load(request.cookies.get(COOKIE)) or Session()
            form = await _read_form(request) if request.method == "POST" else {}
            p = Page(request, ctx, session, None, form, path)
            response = await run_in_threadpool(_answer, p, handler, action, roles, purpose,
                                               signed_in)
            response.set_cookie(COOKIE, codec.dump(p.session),
                                **cookie_settings(request.url.scheme == "https"))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        endpoint.__name__ = f"page_{handler.__name__}"
        router.add_api_route(path, endpoint, methods=list(methods), include_in_schema=False,
                             response_model=None)
        return handler

    return register


def _answer(p: Page, handler, action, roles, purpose, signed_in) -> Response:
    try:
        p.user = _authenticate(p.ctx, p.session)
        if p.session.token and p.user is None:  # revoked, or the OIDC token expired
            p.session = Session()
        if signed_in and p.user is None:
            return RedirectResponse(f"/sign-in?next={quote(p.path)}", 303)
        if p.request.method == "POST" and not p.session.csrf_ok(p.value("csrf_token")):
            return p.render("refused.html", 403, title="This form has expired",
                            reasons=["The form was not sent from this service's page, or it "
                                     "has expired. Go back, reload the page and try again."],
                            decision_id=None)
        if p.user is not None and action is not None and (
                (roles and p.user.role not in roles)
                or not adapter.role_may(p.ctx, p.user, action)):
            p.call(adapter.refuse_page, action, purpose)
        return handler(p)
    except Bounce as bounce:
        return bounce.response
    except Exception as exc:  # noqa: BLE001 - never a stack trace out (as the API)
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error("page error %s at %s on %s", type(exc).__name__, where, p.path)
        return p.render("not_found.html", 500, title="Sorry, there is a problem",
                        message="Something went wrong. The operator's log has details.")


def input_errors(exc: InvalidInput | Conflict, fields: dict[str, str] | None = None) -> list:
    """(field id, message) pairs for the error summary from an operation's input error:
    each problem's field mapped to the form's field (`fields`), else the first field."""
    fields = fields or {}
    first = next(iter(fields.values()), "main-content")
    if isinstance(exc, InvalidIdentifiers):
        return [(name, f"{LABELS.get(name, name)}: {reason}")
                for name, reason in exc.identifier_problems]
    problems = getattr(exc, "problems", None) or []
    if not problems:
        text = str(exc)
        name, _, message = text.partition(": ")
        problems = [(name, message)] if message and name in fields else [("", text)]
    out = []
    for name, message in problems:
        name = name.removeprefix("identifiers.")
        target = fields.get(name) or (name if name in LABELS else first)
        out.append((target, _sentence(message if name in fields else str(exc))))
    return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


LABELS = {"given_name": "First name", "family_name": "Last name",
          "date_of_birth": "Date of birth", "postcode": "Postcode",
          "nino": "National Insurance number", "nhs_number": "NHS number"}
IDENTIFIER_FIELDS = tuple(LABELS)


def identifiers_from(p: Page) -> tuple[dict[str, str], list]:
    found = {k: p.value(k) for k in IDENTIFIER_FIELDS if p.value(k)}
    errors = [(k, f"Enter the person's {LABELS[k].lower()}")
              for k in ("given_name", "family_name", "date_of_birth") if k not in found]
    too_long = [(k, f"{LABELS[k]} must be 100 characters or fewer")
                for k, v in found.items() if len(v) > 100]
    return found, errors + too_long
