"""The HTTP API (FastAPI): `create_app(home) -> FastAPI`. OpenAPI at /docs and /openapi.json.

Rules every route follows:
* who are you: a Bearer token (our API token or an OIDC JWT) → 401 if missing/bad;
* may you: only `PolicyEngine.decide` answers (via ServiceContext.decide) → 403 with the
  policy's reasons; every decision is in the ledger;
* input: pydantic models, unknown fields refused → 422 naming the field; identifiers are
  checked by the connectors' own standardiser (what an extract accepts, the API accepts;
  what it refuses is a 422 naming the field and the reason, never the value); bodies over
  MAX_BODY_BYTES → 413; any unexpected failure → a generic 500 (no stack trace out);
* audit: each request is ONE ledger entry (`ctx.one_entry()`): its disclosure event carries
  the decision, or the decision is the entry (refusals, reads that disclose no person).

Raw identifiers arrive only in POST bodies (never in URLs, so never in access logs) and
are pseudonymised at once; they are not stored, logged, or passed on.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from joinedup import __version__
from joinedup.home import Home, load_home
from joinedup.service_context import (
    CollationInputError,
    InvalidIdentifiers,
    NotAvailable,
    NotFound,
    Refused,
    ServiceContext,
    now_iso,
    referral_resource,
)
from joinedup.users import AuthError, User, looks_like_jwt

MAX_BODY_BYTES = 64 * 1024
log = logging.getLogger("joinedup.api")


# -- errors -----------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "message": message, **extra}, status, headers=headers)


class BodyLimit:
    """ASGI middleware: a body over the limit gets 413 before any route sees it, whether
    its size is declared (Content-Length) or streamed (chunked). The body is buffered,
    which is cheap at this limit, and replayed to the app."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _send_413(send, self.limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await _send_413(send, self.limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _send_413(send, limit: int) -> None:
    response = _error(413, "request_too_large", f"request body is larger than {limit} bytes")
    await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# -- request models ---------------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Identifiers(Strict):
    """The person in front of the adviser, as they give them. Pseudonymised on arrival."""

    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    date_of_birth: str = Field(
        min_length=1, max_length=40,
        description="As the person gives it: YYYY-MM-DD, DD/MM/YYYY, 3 Feb 1990, ... "
        "(whatever the connectors' standardiser accepts)",
    )
    middle_names: str | None = Field(default=None, max_length=200)
    nhs_number: str | None = Field(default=None, max_length=20)
    nino: str | None = Field(default=None, max_length=20)
    sex: str | None = Field(default=None, max_length=10)
    postcode: str | None = Field(default=None, max_length=10)
    address: str | None = Field(default=None, max_length=300)
    locality: str | None = Field(default=None, max_length=100)

    def raw(self) -> dict:
        return self.model_dump(exclude_none=True)


Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class ConsentGrant(Strict):
    identifiers: Identifiers
    purposes: list[Code] = Field(min_length=1, max_length=20)
    categories: list[Code] = Field(min_length=1, max_length=40)
    controllers: list[Code] = Field(default_factory=list, max_length=20)
    collection_method: str = Field(default="in_person_signed", max_length=64)
    privacy_notice_version: str = Field(default="1", max_length=32)
    expires_at: str | None = Field(default=None, max_length=40)


class SummaryRequest(Strict):
    identifiers: Identifiers
    purpose: Code = "employment_support"
    categories: list[Code] | None = Field(default=None, max_length=40)


class ReferralRequest(Strict):
    identifiers: Identifiers
    provider: Code
    barriers: list[Code] = Field(min_length=1, max_length=20)
    purpose: Code = "employment_support"


class SubjectAccessRequest(Strict):
    identifiers: Identifiers


# -- the app ----------------------------------------------------------------------------
async def current_user(request: Request,
                       authorization: Annotated[str | None, Header()] = None) -> User:
    """Who is asking (401 if we cannot tell). Our API tokens are checked on the event loop
    (an HMAC and a stat: cheaper than a thread hop); an OIDC JWT may fetch the JWKS, so it
    is checked on the thread pool."""
    auth = request.app.state.ctx.auth
    try:
        if authorization and looks_like_jwt(authorization.partition(" ")[2].strip()):
            return await run_in_threadpool(auth.authenticate, authorization)
        return auth.authenticate(authorization)
    except AuthError as exc:
        raise ApiError(401, "unauthenticated", str(exc)) from exc


Caller = Annotated[User, Depends(current_user)]


def create_app(home: Home | Path | str, context: ServiceContext | None = None,
               workers: int = 1) -> FastAPI:
    """The API of one deployment home (one ServiceContext per process). With `workers` > 1
    this is one of several processes sharing the home: the store is opened per operation
    (ServiceContext(shared=True)), and a summary request runs on the process's event loop:
    the processes give the parallelism, and one request at a time per process holds the GIL
    without the thread hand-offs that cost ~1-3 ms of CPU a request in a thread pool
    (measured: bench/RESULTS-service.md)."""
    if not isinstance(home, Home):
        home = load_home(Path(home))
    ctx = context or ServiceContext(home, shared=workers > 1)
    summaries_on_the_loop = workers > 1
    process_id = secrets.token_hex(4)
    app = FastAPI(
        title="joinedup",
        version=__version__,
        description="Consented barrier summaries, referrals, area counts and a verifiable "
        "audit ledger for joined-up employment support. Authenticate with "
        "`Authorization: Bearer <token>` (from `joinedup users add`, or an OIDC JWT).",
    )
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _install_error_handlers(app)
    from joinedup.pages.web import mount_pages  # the web pages (sign-in at /sign-in)

    mount_pages(app)

    # -- pages and meta -----------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page() -> HTMLResponse:
        from joinedup.pages import render_status_page

        return HTMLResponse(render_status_page(_status(ctx)))

    @app.get("/v1/health", tags=["meta"])
    def health() -> dict:
        # Which process answers (a random id per process, not the OS pid): with --workers N,
        # operators and the tests see that every worker serves.
        return {"status": "ok", "version": __version__, "process": process_id}

    @app.get("/v1/me", tags=["meta"])
    def me(user: Caller) -> dict:
        return user.subject()

    # -- consent ------------------------------------------------------------------------
    @app.post("/v1/consent", status_code=201, tags=["consent"])
    def grant_consent(body: ConsentGrant, user: Caller) -> dict:
        from consent import ConsentError

        try:
            return ctx.grant_consent(
                user,
                body.identifiers.raw(),
                body.purposes,
                body.categories,
                controllers=body.controllers,
                collection_method=body.collection_method,
                privacy_notice_version=body.privacy_notice_version,
                expires_at=body.expires_at,
            )
        except ConsentError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc

    @app.post("/v1/consent/{receipt_id}/withdraw", tags=["consent"])
    def withdraw_consent(receipt_id: Code, user: Caller) -> dict:
        record = ctx.withdraw_consent(user, receipt_id)
        return {"receipt_id": receipt_id, "withdrawn_at": record.withdrawn_at}

    @app.get("/v1/consent/{receipt_id}/receipt", tags=["consent"])
    def consent_receipt(receipt_id: Code, user: Caller) -> dict:
        with ctx.one_entry():
            record = ctx.consent_record(receipt_id)
            ctx.decide(
                user,
                "consent.record",
                {"person_key": record.person_key},
                purpose=record.purposes[0] if record.purposes else None,
            )
            return ctx.consent.receipt(receipt_id)

    # -- summaries ----------------------------------------------------------------------
    @app.post("/v1/summaries", tags=["summaries"], response_class=JSONResponse)
    async def request_summary(body: SummaryRequest, user: Caller) -> JSONResponse:
        # The hot path. With several worker processes it runs on this process's event loop;
        # with one, on the thread pool (once). The answer is plain JSON already, so it goes
        # out as it is (FastAPI's generic encoding of it cost ~0.1 ms a request).
        if summaries_on_the_loop:
            result = _summary(ctx, user.subject(), body)
        else:
            result = await run_in_threadpool(_summary, ctx, user.subject(), body)
        return JSONResponse(result)

    # -- referrals ----------------------------------------------------------------------
    @app.post("/v1/referrals", status_code=201, tags=["referrals"])
    def create_referral(body: ReferralRequest, user: Caller) -> dict:
        referral = ctx.create_referral(
            user, body.identifiers.raw(), body.provider, body.barriers, body.purpose
        )
        return referral.public()

    @app.get("/v1/referrals", tags=["referrals"])
    def list_referrals(user: Caller) -> dict:
        """The referrals addressed to the caller's organisation that the policy lets it
        read now (each one decided, so a withdrawn consent drops it from the list)."""
        visible = []
        with ctx.one_entry():
            for referral in ctx.referrals_for(user.organisation):
                decision = ctx.decide(
                    user,
                    "referral.read",
                    referral_resource(referral),
                    purpose=referral.purpose,
                    consent=ctx.consent_state(referral.person_key, referral.purpose),
                    refuse=False,
                )
                if decision.allow:
                    visible.append(referral.public())
            if visible:  # the listing's one entry carries each referral's decision
                ctx.audit({"type": "referral.listed", "actor": user.subject(),
                           "provider": user.organisation,
                           "referral_ids": [r["referral_id"] for r in visible]})
        return {"referrals": visible}

    @app.get("/v1/referrals/{referral_id}", tags=["referrals"])
    def read_referral(referral_id: Code, user: Caller) -> dict:
        """The referral summary: only the barriers the provider was asked to address."""
        try:
            referral = ctx.get_referral(referral_id)
        except NotFound:
            referral = None
        if referral is None or referral.provider != user.organisation:
            # Same answer for "absent" and "not yours" after the policy has had its say.
            with ctx.one_entry():
                ctx.decide(
                    user,
                    "referral.read",
                    {"provider": user.organisation, "referred_to": []},
                )
            raise ApiError(404, "not_found", f"no referral {referral_id} for {user.organisation}")
        collate = _collate()
        return collate.request_referral_summary(ctx, user.subject(), referral)

    # -- area counts --------------------------------------------------------------------
    @app.get("/v1/area-counts", tags=["area counts"])
    def area_counts(
        user: Caller,
        level: Annotated[str, Query(pattern=r"^(sector|district|ward|lsoa)$")] = "sector",
        purpose: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "service_planning",
    ) -> dict:
        collate = _collate()
        return collate.request_area_counts(ctx, user.subject(), level=level, purpose=purpose)

    # -- linkage ------------------------------------------------------------------------
    @app.get("/v1/linkage/status", tags=["linkage"])
    def linkage_status(user: Caller) -> dict:
        with ctx.one_entry():
            ctx.decide(user, "linkage.report.read", {}, purpose="linkage_operations")
            run = ctx.current_run_dir()
            summary = _read_json(run / "summary.json")
        return {"run": run.name, "summary": summary}

    @app.get("/v1/linkage/report", response_class=HTMLResponse, tags=["linkage"])
    def linkage_report(user: Caller) -> HTMLResponse:
        with ctx.one_entry():
            ctx.decide(user, "linkage.report.read", {}, purpose="linkage_operations")
            report = ctx.current_run_dir() / "report.html"
            if not report.exists():
                raise NotFound("the current run has no report")
            return HTMLResponse(report.read_text())

    # -- audit --------------------------------------------------------------------------
    @app.get("/v1/audit/verify", tags=["audit"])
    def audit_verify(user: Caller) -> dict:
        with ctx.one_entry():
            ctx.decide(user, "audit.verify", {}, purpose="oversight")
            return ctx.verify_ledger()

    @app.get("/v1/audit/report", tags=["audit"])
    def audit_report(
        user: Caller,
        from_: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}")] = None,
        to: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}")] = None,
    ) -> dict:
        with ctx.one_entry():
            ctx.decide(user, "audit.report.read", {}, purpose="oversight")
            return ctx.audit_report(from_, to)

    @app.get("/v1/audit/proof/{event_id}", tags=["audit"])
    def audit_proof(event_id: Code, user: Caller) -> dict:
        with ctx.one_entry():
            ctx.decide(user, "audit.verify", {}, purpose="oversight")
            return ctx.inclusion_proof(event_id)

    @app.post("/v1/audit/subject-access", tags=["audit"])
    def audit_subject_access(body: SubjectAccessRequest, user: Caller) -> dict:
        person_key = ctx.person_key(body.identifiers.raw())
        with ctx.one_entry():
            ctx.decide(
                user, "audit.subject_access", {"person_key": person_key}, purpose="subject_access"
            )
            return {"person_key": person_key, "disclosures": ctx.subject_access(person_key)}

    return app


# -- helpers ----------------------------------------------------------------------------
def _summary(ctx: ServiceContext, subject: dict, body: SummaryRequest) -> dict:
    return _collate().request_summary(ctx, subject, body.identifiers.raw(), purpose=body.purpose,
                                      categories=body.categories)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.error, exc.message, **exc.extra)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> Response:
        return _error(
            403,
            "forbidden",
            "; ".join(exc.reasons),
            reasons=exc.reasons,
            decision_id=exc.decision_id,
        )

    @app.exception_handler(CollationInputError)
    async def unusable_input(_: Request, exc: CollationInputError) -> Response:
        if isinstance(exc, InvalidIdentifiers):  # every identifier route has `identifiers`
            problems = [{"field": f"body.identifiers.{name}", "reason": reason}
                        for name, reason in exc.problems]
            return _error(422, "invalid_request", str(exc), problems=problems)
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> Response:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(NotAvailable)
    async def not_available(_: Request, exc: NotAvailable) -> Response:
        return _error(503, "not_available", f"not available yet: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ())),
                "reason": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        return _error(422, "invalid_request", "the request is not valid", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:
            return _error(
                413, "request_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes"
            )
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Log the kind and place only: messages may quote input, which may be identifying.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error(
            "internal error %s at %s on %s %s",
            type(exc).__name__,
            where,
            request.method,
            request.url.path,
        )
        return _error(500, "internal_error", "internal error; the operator's log has details")


def _collate():
    try:
        from joinedup import collate
    except ImportError as exc:
        raise NotAvailable("collation (joinedup.collate)") from exc
    return collate


def _read_json(path: Path) -> dict:
    import json

    if not path.exists():
        raise NotFound(f"{path.name} missing from the current run")
    return json.loads(path.read_text())


def _status(ctx: ServiceContext) -> dict:
    """Non-sensitive facts for the status page at /."""
    try:
        run = ctx.current_run_dir().name
    except NotFound:
        run = None
    return {
        "version": __version__,
        "project_id": ctx.home.project_id,
        "current_run": run,
        "time": now_iso(),
    }
