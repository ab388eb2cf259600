"""The HTTP API (FastAPI): `create_app(home) -> FastAPI`. OpenAPI at /docs and /openapi.json.

Rules every route follows:
* who are you: a Bearer token (our API token or an OIDC JWT) → 401 if missing/bad;
* may you: only `PolicyEngine.decide` answers, through joinedup/operations (the routes are
  thin: parse, call the action, shape the answer) → 403 with the policy's reasons when the
  caller's role may know them, else the same answer a "not found" gets (`Withheld`);
* input: pydantic models, unknown fields refused → 422 naming the field; identifiers are
  checked by the connectors' own standardiser (what an extract accepts, the API accepts;
  what it refuses is a 422 naming the field and the reason, never the value); bodies over
  MAX_BODY_BYTES → 413; any unexpected failure → a generic 500 (no stack trace out);
* audit: each request is ONE ledger entry (joinedup/operations/protocol.py): its effect or
  disclosure event carries the decision, or the decision is the entry (refusals, reads that
  disclose no person); a request refused as invalid is a `request.invalid` entry.

Raw identifiers arrive only in POST bodies (never in URLs, so never in access logs) and
are pseudonymised at once; they are not stored, logged, or passed on.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit import LedgerError
from joinedup import __version__
from joinedup import operations as ops
from joinedup.errors import (
    Conflict,
    InvalidIdentifiers,
    InvalidInput,
    NotAvailable,
    NotFound,
    Refused,
    Withheld,
)
from joinedup.home import Home, load_home
from joinedup.operations import review as review_ops
from joinedup.operations.protocol import Action
from joinedup.service_context import ServiceContext, now_iso
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
    privacy_notice_version: str | None = Field(default=None, max_length=32)
    expires_at: str | None = Field(default=None, max_length=40)


class SummaryBody(Strict):
    identifiers: Identifiers
    purpose: Code = "employment_support"
    categories: list[Code] | None = Field(default=None, max_length=40)


class ReferralBody(Strict):
    identifiers: Identifiers
    provider: Code
    barriers: list[Code] = Field(min_length=1, max_length=20)
    purpose: Code = "employment_support"


class SubjectAccessBody(Strict):
    identifiers: Identifiers


# -- response models --------------------------------------------------------------------
class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    error: str
    message: str
    reasons: list[str] | None = None
    decision_id: str | None = None
    problems: list[Problem] | None = None


class Health(BaseModel):
    status: str
    version: str
    process: str


class Me(BaseModel):
    id: str
    role: str
    organisation: str


class ConsentGrantedOut(BaseModel):
    receipt_id: str
    receipt: dict[str, Any]


class ConsentWithdrawnOut(BaseModel):
    receipt_id: str
    withdrawn_at: str


class SummaryOut(BaseModel):
    outcome: str = Field(description="matched, no_match or needs_review")
    decision_id: str
    summary: dict[str, Any] | None = None
    text: str | None = None
    reason: str | None = None
    rows_decrypted: int | None = None


class ReferralOut(BaseModel):
    referral_id: str
    provider: str
    barriers: list[str]
    purpose: str
    created_by_org: str
    created_at: str


class ReferralList(BaseModel):
    referrals: list[ReferralOut]


class ReferralSummaryOut(SummaryOut):
    referral: ReferralOut


class AreaCountsOut(BaseModel):
    level: str
    decision_id: str
    audit_event_id: str
    metadata: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, Any]]
    csv: str


class ReviewLabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(pattern=r"^(match|non-match|unsure)$")
    purpose: str = Field(default="queue", pattern=r"^(queue|sample-links|sample-band|request)$")


class RecordRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=100)
    ref: str = Field(min_length=1, max_length=200)


class RecordsPairIn(BaseModel):
    """Any two records of a run (linked or not), for "why did these two (not) link?"."""
    model_config = ConfigDict(extra="forbid")
    left: RecordRef
    right: RecordRef
    run: str | None = Field(default=None, max_length=100)


class RecordsPairLabelIn(ReviewLabelIn):
    left: RecordRef
    right: RecordRef


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str | None = Field(default=None, max_length=100,
                           pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$",
                           description="Run to make current (default: the one before)")


class LinkageStatusOut(BaseModel):
    run: str
    summary: dict[str, Any]


class SubjectAccessOut(BaseModel):
    person_key: str
    disclosures: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "not authenticated"), (403, "refused (or, for a role that may not know, not "
                                          "found: the two look the same)"),
        (404, "not found"), (409, "conflicts with the current state"),
        (413, "request body too large"), (422, "invalid input"),
        (503, "a piece of the deployment is missing"))
}

# Routes whose requests name a person or change state: an invalid body is recorded too.
RECORDED_ROUTES = {("POST", "/v1/consent"): "consent.record",
                   ("POST", "/v1/summaries"): "summary.request",
                   ("POST", "/v1/referrals"): "referral.create",
                   ("POST", "/v1/audit/subject-access"): "audit.subject_access"}


# -- the app ----------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="an API token from `joinedup users add`, "
                    "or an OIDC identity token")


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> User:
    """Who is asking (401 if we cannot tell). Our API tokens are checked on the event loop
    (an HMAC and a stat: cheaper than a thread hop); an OIDC JWT may fetch the JWKS, so it
    is checked on the thread pool."""
    auth = request.app.state.ctx.auth
    authorization = request.headers.get("authorization")
    try:
        if credentials is not None and looks_like_jwt(credentials.credentials):
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
    ctx = context or ops.open_service(home, shared=workers > 1)
    summaries_on_the_loop = workers > 1
    process_id = secrets.token_hex(4)
    app = FastAPI(
        title="joinedup",
        version=__version__,
        description="Consented barrier summaries, referrals, area counts and a verifiable "
        "audit ledger for joined-up employment support. Authenticate with "
        "`Authorization: Bearer <token>` (from `joinedup users add`, or an OIDC JWT).",
        docs_url=None, redoc_url=None,
    )
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _install_error_handlers(app)
    _install_docs(app)
    from joinedup.pages.web import mount_pages  # the web pages (sign-in at /sign-in)

    mount_pages(app)

    # -- pages and meta -----------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page() -> HTMLResponse:
        from joinedup.pages import render_status_page

        return HTMLResponse(render_status_page(_status(ctx)))

    @app.get("/v1/health", tags=["meta"], response_model=Health)
    def health() -> dict:
        # Which process answers (a random id per process, not the OS pid): with --workers N,
        # operators and the tests see that every worker serves.
        return {"status": "ok", "version": __version__, "process": process_id}

    @app.get("/v1/me", tags=["meta"], response_model=Me, responses=ERRORS)
    def me(user: Caller) -> dict:
        return user.subject()

    # -- consent ------------------------------------------------------------------------
    @app.post("/v1/consent", status_code=201, tags=["consent"],
              response_model=ConsentGrantedOut, responses=ERRORS)
    def grant_consent(body: ConsentGrant, user: Caller) -> dict:
        granted = ops.grant_consent(ctx, user, ops.GrantConsent(
            identifiers=body.identifiers.raw(), purposes=body.purposes,
            categories=body.categories, controllers=body.controllers,
            collection_method=body.collection_method,
            privacy_notice_version=body.privacy_notice_version, expires_at=body.expires_at))
        return {"receipt_id": granted.receipt_id, "receipt": granted.receipt}

    @app.post("/v1/consent/{receipt_id}/withdraw", tags=["consent"],
              response_model=ConsentWithdrawnOut, responses=ERRORS)
    def withdraw_consent(receipt_id: Code, user: Caller) -> dict:
        done = ops.withdraw_consent(ctx, user, ops.WithdrawConsent(receipt_id))
        return {"receipt_id": done.receipt_id, "withdrawn_at": done.withdrawn_at}

    @app.get("/v1/consent/{receipt_id}/receipt", tags=["consent"], response_model=Open,
             responses=ERRORS)
    def consent_receipt(receipt_id: Code, user: Caller) -> dict:
        return ops.read_receipt(ctx, user, ops.ReadReceipt(receipt_id))

    # -- summaries ----------------------------------------------------------------------
    @app.post("/v1/summaries", tags=["summaries"], response_class=JSONResponse,
              response_model=SummaryOut, responses=ERRORS)
    async def request_summary(body: SummaryBody, user: Caller) -> JSONResponse:
        # The hot path. With several worker processes it runs on this process's event loop;
        # with one, on the thread pool (once). The answer is plain JSON already, so it goes
        # out as it is (FastAPI's generic encoding of it cost ~0.1 ms a request).
        request = ops.SummaryRequest(identifiers=body.identifiers.raw(), purpose=body.purpose,
                                     categories=body.categories)
        if summaries_on_the_loop:
            result = ops.request_summary(ctx, user, request)
        else:
            result = await run_in_threadpool(ops.request_summary, ctx, user, request)
        return JSONResponse(result.to_dict())

    # -- referrals ----------------------------------------------------------------------
    @app.post("/v1/referrals", status_code=201, tags=["referrals"], response_model=ReferralOut,
              responses=ERRORS)
    def create_referral(body: ReferralBody, user: Caller) -> dict:
        referral = ops.create_referral(ctx, user, ops.CreateReferral(
            identifiers=body.identifiers.raw(), provider=body.provider, barriers=body.barriers,
            purpose=body.purpose))
        return referral.public()

    @app.get("/v1/referrals", tags=["referrals"], response_model=ReferralList,
             responses=ERRORS)
    def list_referrals(user: Caller) -> dict:
        """The referrals addressed to the caller's organisation that the policy lets it
        read now (each one decided, so a withdrawn consent drops it from the list)."""
        return {"referrals": ops.list_referrals(ctx, user)}

    @app.get("/v1/referrals/{referral_id}", tags=["referrals"],
             response_model=ReferralSummaryOut, responses=ERRORS)
    def read_referral(referral_id: Code, user: Caller) -> dict:
        """The referral summary: only the barriers the provider was asked to address."""
        read = ops.read_referral(ctx, user, ops.ReadReferral(referral_id))
        return {**read.summary.to_dict(), "referral": read.referral.public()}

    # -- area counts --------------------------------------------------------------------
    @app.get("/v1/area-counts", tags=["area counts"], response_model=AreaCountsOut,
             responses=ERRORS)
    def area_counts(
        user: Caller,
        level: Annotated[str, Query(pattern=r"^(sector|district|ward|lsoa)$")] = "sector",
        purpose: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "service_planning",
    ) -> dict:
        return ops.request_area_counts(ctx, user, ops.AreaCountsRequest(level=level,
                                                                        purpose=purpose))

    # -- linkage ------------------------------------------------------------------------
    @app.get("/v1/linkage/status", tags=["linkage"], response_model=LinkageStatusOut,
             responses=ERRORS)
    def linkage_status(user: Caller) -> dict:
        return ops.linkage.status(ctx, user)

    @app.get("/v1/linkage/report", response_class=HTMLResponse, tags=["linkage"],
             responses=ERRORS)
    def linkage_report(user: Caller) -> HTMLResponse:
        return HTMLResponse(ops.linkage.report_html(ctx, user))

    @app.get("/v1/linkage/runs", tags=["linkage"], responses=ERRORS)
    def linkage_runs(user: Caller) -> dict:
        """Every finished link run with its figures and entity-change counts, and which one
        is current: the operation `joinedup runs list` runs."""
        return ops.linkage.list_runs(ctx, user)

    @app.get("/v1/linkage/runs/{run}", tags=["linkage"], responses=ERRORS)
    def linkage_run(user: Caller, run: str) -> dict:
        """One link run's summary and its entity changes (ids) against the run before it:
        the operation `joinedup runs show` runs."""
        return ops.linkage.show_run(ctx, user, ops.linkage.RunRequest(run))

    @app.post("/v1/linkage/runs/rollback", tags=["linkage"], responses=ERRORS)
    def linkage_runs_rollback(user: Caller, body: RollbackIn) -> dict:
        """Make an earlier link run current again (decided, recorded, then switched): the
        operation `joinedup runs rollback` runs."""
        return ops.linkage.rollback_run(ctx, user, ops.linkage.RollbackRequest(body.to))

    @app.get("/v1/linkage/review/next", tags=["linkage"], responses=ERRORS)
    def linkage_review_next(user: Caller, count: Annotated[int, Query(ge=1, le=50)] = 1) -> dict:
        """The clerical-review queue's next pairs (encodings only: sources, refs, entity ids),
        the number labelled so far and the accuracy estimate from sampled labels."""
        return review_ops.review_queue(ctx, user, review_ops.QueueRequest(limit=count))

    @app.get("/v1/linkage/review/pairs/{pair_id}", tags=["linkage"], responses=ERRORS)
    def linkage_review_pair(user: Caller, pair_id: str) -> dict:
        """One pair's match-weight waterfall (why two records did or did not link)."""
        return review_ops.show_pair(ctx, user, review_ops.PairRequest(pair_id))

    @app.post("/v1/linkage/review/pairs/{pair_id}/label", tags=["linkage"], responses=ERRORS)
    def linkage_review_label(user: Caller, pair_id: str, body: ReviewLabelIn) -> dict:
        """Label a pair (recorded, then stored; the next link run uses it)."""
        return review_ops.label_pair(ctx, user, review_ops.LabelPair(pair_id, body.label, body.purpose))

    @app.post("/v1/linkage/review/compare", tags=["linkage"], responses=ERRORS)
    def linkage_review_compare(user: Caller, body: RecordsPairIn) -> dict:
        """Any two records of a run, linked or not: the waterfall, and the blocking rules
        that brought them together (none: the run never compared them)."""
        return review_ops.show_pair(ctx, user, review_ops.RecordsPairRequest(
            (body.left.source, body.left.ref), (body.right.source, body.right.ref), run=body.run))

    @app.post("/v1/linkage/review/compare/label", tags=["linkage"], responses=ERRORS)
    def linkage_review_compare_label(user: Caller, body: RecordsPairLabelIn) -> dict:
        """Label two records as a pair, e.g. confirm a link the run missed (recorded, then
        stored; the next link run uses it)."""
        return review_ops.label_pair(ctx, user, review_ops.LabelPair(
            "", body.label, body.purpose, (body.left.source, body.left.ref),
            (body.right.source, body.right.ref)))

    # -- audit --------------------------------------------------------------------------
    @app.get("/v1/audit/verify", tags=["audit"], response_model=Open, responses=ERRORS)
    def audit_verify(user: Caller) -> dict:
        return ops.audit.verify(ctx, user)

    @app.get("/v1/audit/report", tags=["audit"], response_model=Open, responses=ERRORS)
    def audit_report(
        user: Caller,
        from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        to: Annotated[str | None, Query(max_length=40)] = None,
    ) -> dict:
        return ops.audit.report(ctx, user, ops.audit.ReportRequest(from_, to))

    @app.get("/v1/audit/proof/{event_id}", tags=["audit"], response_model=Open,
             responses=ERRORS)
    def audit_proof(event_id: Code, user: Caller) -> dict:
        return ops.audit.inclusion_proof(ctx, user, event_id)

    @app.post("/v1/audit/subject-access", tags=["audit"], response_model=SubjectAccessOut,
              responses=ERRORS)
    def audit_subject_access(body: SubjectAccessBody, user: Caller) -> dict:
        return ops.audit.subject_access_request(ctx, user, body.identifiers.raw())

    return app


DOCS_ASSETS = "/docs-assets"


def _install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle package's files, served here: the page
    loads nothing from any other host."""
    import swagger_ui_bundle

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="joinedup API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


# -- helpers ----------------------------------------------------------------------------
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.error, exc.message, **exc.extra)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> Response:
        return _error(403, "forbidden", "; ".join(exc.reasons), reasons=exc.reasons,
                      decision_id=exc.decision_id)

    @app.exception_handler(Withheld)
    async def withheld(_: Request, exc: Withheld) -> Response:
        # The same for "refused" and "not found": a role that may not know learns nothing.
        return _error(403, "forbidden", str(exc), decision_id=exc.decision_id)

    @app.exception_handler(InvalidInput)
    async def unusable_input(_: Request, exc: InvalidInput) -> Response:
        if isinstance(exc, InvalidIdentifiers):  # every identifier route has `identifiers`
            problems = [{"field": f"body.identifiers.{name}", "reason": reason}
                        for name, reason in exc.identifier_problems]
        else:
            problems = [{"field": f, "reason": r} for f, r in exc.problems]
        return _error(422, "invalid_request", str(exc), problems=problems)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> Response:
        return _error(409, "conflict", str(exc))

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> Response:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(NotAvailable)
    async def not_available(_: Request, exc: NotAvailable) -> Response:
        return _error(503, "not_available", f"not available yet: {exc}")

    @app.exception_handler(LedgerError)
    async def ledger_down(_: Request, exc: LedgerError) -> Response:
        # The ledger cannot record: nothing was applied (record comes before apply).
        log.error("the audit ledger cannot record: %s", type(exc).__name__)
        return _error(503, "ledger_unavailable", "the audit ledger cannot record now; "
                      "nothing was done")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # Field paths and pydantic's messages, never the input (a path can hold a dict key
        # the caller sent: those are redacted when recorded).
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())),
             "reason": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        await run_in_threadpool(_record_invalid_body, request, problems)
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


def _record_invalid_body(request: Request, problems: list[dict]) -> None:
    """A request that names a person (or changes state) is recorded even when its body is
    invalid: one `request.invalid` entry, fields and reasons only."""
    path = request.url.path
    action = RECORDED_ROUTES.get((request.method, path))
    if action is None and request.method == "POST" and path.startswith("/v1/consent/"):
        action = "consent.record"  # a withdrawal
    if action is None:
        return
    ctx: ServiceContext = request.app.state.ctx
    try:
        user = ctx.auth.authenticate(request.headers.get("authorization"))
    except AuthError:
        return  # nobody to record it for; the route's 401 would have come first anyway
    with Action(ctx, user, action) as act:
        act.event_id = act.record_invalid([(p["field"], p["reason"]) for p in problems])


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
