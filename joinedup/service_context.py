"""What one service process holds open: the home, one DuckDB connection, the policy
engine, the ledger, the consent store, the users. Shared by the HTTP API and the demo.

The DuckDB store: one process (`shared=False`: the CLI, the demo, a one-process server)
keeps one connection open, and each operation takes its own cursor from it, so threads never
share a cursor. Several server processes on one home (`shared=True`, `joinedup serve
--workers N`) open the store per operation and take turns through its gate
(connectors.files.StoreGate); what they cache from it (the consent index, the active
extracts) is re-read when the gate's write generation moves, so a write in one process
(a withdrawal, say) is seen by the next request in every process. The ledger is itself
thread and process safe.

One ledger entry per request: inside `ctx.one_entry()` (every API request and every
operation below opens one; nested scopes join the outermost), a decision is not written on
its own. The request's one disclosure event (`summary.disclosed`, `consent.granted`, ...)
carries it under `decision`; a refusal, or an allowed request that disclosed nothing, is
one `policy.decision` event (with `outcome` saying what happened).

Pieces from other concerns are imported lazily: while one has not landed, the part of the
service that needs it answers "not available yet" (HTTP 503) instead of pretending.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from connectors.files import StoreConnection
from joinedup.home import Home
from joinedup.users import Authenticator, User, open_authenticator

DEFAULT_PURPOSE = "employment_support"


class NotAvailable(Exception):
    """A piece of the system this request needs has not been built/configured yet."""


class Refused(Exception):
    """The policy said no: carries its plain-English reasons and the decision id."""

    def __init__(self, reasons: list[str], decision_id: str | None = None) -> None:
        super().__init__("; ".join(reasons) or "not allowed")
        self.reasons = reasons or ["not allowed"]
        self.decision_id = decision_id


class NotFound(Exception):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class CollationInputError(ValueError):
    """The request itself is unusable (bad identifiers, adjustment, level): a 4xx."""


class InvalidIdentifiers(CollationInputError):
    """The standardiser refused identifiers the caller gave: (field, reason) per problem,
    never the value."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("the identifiers cannot identify a person: "
                         + "; ".join(f"{f}: {r}" for f, r in problems))


PERSON_KEY_FIELDS = {"given_name": "given_canon", "family_name": "family", "date_of_birth": "dob"}


def standardise_identifiers(identifiers: dict):
    """The person in front of the adviser, standardised by the connectors' own standardiser
    (so the API accepts exactly what an extract accepts). Raises InvalidIdentifiers for a
    field the caller gave that the standardiser refused, or a missing person-key field."""
    try:
        from connectors.standardise import standardise_identity
    except ImportError as exc:
        raise NotAvailable("identity standardisation (connectors.standardise)") from exc
    raw = {k: v for k, v in identifiers.items() if k != "local_id"}
    ident, found = standardise_identity(raw)
    given = {k for k, v in raw.items() if isinstance(v, str) and v.strip()}
    problems = [(p.field, p.reason) for p in found if not p.fatal and p.field in given]
    refused = {f for f, _ in problems}
    for name, attr in PERSON_KEY_FIELDS.items():
        if getattr(ident, attr) is None and name not in refused:
            problems.append((name, "missing (needed to identify the person)"))
    if problems:
        raise InvalidIdentifiers(problems)
    return ident


@dataclass
class RequestAudit:
    """What one request has decided so far, until its one ledger entry is written."""

    decisions: list = field(default_factory=list)
    written: bool = False


_request_audit: ContextVar[RequestAudit | None] = ContextVar("joinedup_request_audit",
                                                             default=None)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


REFERRALS_DDL = """
CREATE TABLE IF NOT EXISTS referrals (
    referral_id VARCHAR PRIMARY KEY,
    person_key VARCHAR NOT NULL,
    entity_id VARCHAR,
    provider VARCHAR NOT NULL,
    barriers VARCHAR NOT NULL,      -- JSON list of barrier codes the provider is asked to address
    purpose VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    created_by_org VARCHAR NOT NULL,
    created_at VARCHAR NOT NULL,
    decision_id VARCHAR
)
"""


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
        return {
            "referral_id": self.referral_id,
            "provider": self.provider,
            "barriers": self.barriers,
            "purpose": self.purpose,
            "created_by_org": self.created_by_org,
            "created_at": self.created_at,
        }


class ServiceContext:
    """Opened once per process; every request and the demo go through it."""

    def __init__(self, home: Home, shared: bool = False) -> None:
        self.home = home
        self.shared = shared
        self._store = StoreConnection(home.store_path, duckdb.connect, shared=shared)
        self._gate = self._store.gate
        with self.store() as cur:  # creating a table changes nothing anyone caches: no bump
            cur.execute(REFERRALS_DDL)
        self._lazy_lock = threading.Lock()
        self._extracts_cache: tuple[int, list[tuple]] | None = None
        self.auth: Authenticator = open_authenticator(home)
        self._policy = None
        self._ledger = None
        self._consent = None
        self._keyring = home.keyring()

    # -- shared handles -------------------------------------------------------------
    def store(self, write: bool = False):
        """A cursor on the store for one operation; see connectors.files.StoreConnection."""
        return self._store.cursor(write)

    def active_extract_rows(self) -> list[tuple]:
        """(source, kind, extract_id, manifest) of every active extract; read again only
        after a write to the store (an ingest, in any process)."""
        generation = self._gate.generation()
        cached = self._extracts_cache
        if cached is not None and cached[0] == generation:
            return cached[1]
        with self.store() as cur:
            generation = self._gate.generation()
            rows = cur.execute(
                "SELECT source, kind, extract_id, manifest FROM extracts WHERE active"
            ).fetchall()
        self._extracts_cache = (generation, rows)
        return rows

    @property
    def keyring(self):
        return self._keyring

    @property
    def policy(self):
        if self._policy is None:
            with self._lazy_lock:
                if self._policy is None:
                    self._policy = _open_policy_engine(self.home)
        return self._policy

    @property
    def ledger(self):
        if self._ledger is None:
            with self._lazy_lock:
                if self._ledger is None:
                    self._ledger = _open_ledger(self.home)
        return self._ledger

    @property
    def consent(self):
        if self._consent is None:
            with self._lazy_lock:
                if self._consent is None:
                    self._consent = _open_consent(self.home, self.shared)
        return self._consent

    def close(self) -> None:
        for obj in (self._ledger, self._consent):
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        self._store.close()

    # -- identities -----------------------------------------------------------------
    def person_key(self, identifiers) -> str:
        """Pseudonymise the identifiers of the person in front of the adviser at once
        (a raw dict, or one already standardised by `standardise_identifiers`)."""
        try:
            from connectors.pseudonymise import person_key_of
        except ImportError as exc:
            raise NotAvailable("person pseudonymisation (connectors.pseudonymise)") from exc
        ident = standardise_identifiers(identifiers) if isinstance(identifiers, dict) else identifiers
        return person_key_of(self.keyring, ident)

    # -- decisions ------------------------------------------------------------------
    def decide(
        self,
        user: User,
        action: str,
        resource: dict | None = None,
        purpose: str | None = None,
        consent: dict | None = None,
        refuse: bool = True,
    ):
        """Ask the policy engine; every decision goes to the ledger; on deny raise Refused
        (or, with refuse=False, return the denying decision)."""
        policy_input: dict[str, Any] = {
            "subject": user.subject(),
            "action": action,
            "purpose": purpose or DEFAULT_PURPOSE,
            "resource": resource or {},
            "consent": consent or {"status": "none"},
            "time": now_iso(),
        }
        decision = self.policy.decide(policy_input)
        scope = _request_audit.get()
        if scope is None:  # outside a request: the decision is its own entry
            self.audit(self.decision_event(decision))
        else:
            scope.decisions.append(decision)
        if refuse and not decision.allow:
            raise Refused(list(decision.reasons), decision.decision_id)
        return decision

    def decision_event(self, decision, **extra: Any) -> dict:
        """A `policy.decision` ledger event (keyed input hash, never the input)."""
        return {**decision.to_audit_event(self.keyring.audit_hash_key()), **extra}

    @contextmanager
    def one_entry(self) -> Iterator[RequestAudit]:
        """Scope of one request: everything it decides lands in ONE ledger entry.

        The first event written through `audit` carries the decisions made so far; if the
        request ends without one (a refusal, nothing to disclose, a failure after an allow),
        the decisions are written as one `policy.decision` event."""
        outer = _request_audit.get()
        if outer is not None:  # nested: the outermost scope writes
            yield outer
            return
        scope = RequestAudit()
        token = _request_audit.set(scope)
        failure: BaseException | None = None
        try:
            yield scope
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _request_audit.reset(token)
            if scope.decisions:  # none written yet, or decided after the entry
                self.audit(self._pending_decisions_event(scope, failure))

    def _pending_decisions_event(self, scope: RequestAudit, failure: BaseException | None) -> dict:
        last = scope.decisions[-1]
        extra: dict[str, Any] = {}
        if len(scope.decisions) > 1:
            extra["decisions"] = [self._folded(d) for d in scope.decisions[:-1]]
        if last.allow and failure is not None and not isinstance(failure, Refused):
            # Allowed, then the request failed before disclosing: say so (no message: it
            # could quote input).
            extra.update(outcome="not_disclosed", error=type(failure).__name__)
        return self.decision_event(last, **extra)

    def _folded(self, decision) -> dict:
        """A decision as carried inside another event (to_audit_event's fields)."""
        event = self.decision_event(decision)
        event["decided_at"] = event.pop("time", None)
        for key in ("type", "actor"):
            event.pop(key, None)
        return event

    def consent_state(self, person_key: str, purpose: str) -> dict:
        """The policy input's `consent` object for this person and purpose, now."""
        return self.consent.current(person_key, purpose, now_iso())

    def audit(self, event: dict) -> str:
        """Append one event. Inside a request scope the first event carries the decisions
        made so far (under `decision`, or `decisions` when there were several)."""
        event.setdefault("time", now_iso())
        scope = _request_audit.get()
        if scope is not None:
            if scope.decisions and event.get("type") != "policy.decision":
                folded = [self._folded(d) for d in scope.decisions]
                if len(folded) == 1:
                    event["decision"] = folded[0]
                    event.setdefault("decision_id", folded[0]["decision_id"])
                else:
                    event["decisions"] = folded
            scope.decisions = []
            scope.written = True
        return self.ledger.append(event)

    def actor(self, user: User) -> dict:
        return user.subject()

    # -- operations shared by the API and the demo -------------------------------------
    def grant_consent(self, user: User, identifiers: dict, purposes: list[str],
                      categories: list[str], **details: Any) -> dict:
        """Record a person's consent (decided by policy first); returns the signed receipt."""
        with self.one_entry():
            return self._grant_consent(user, identifiers, purposes, categories, **details)

    def _grant_consent(self, user: User, identifiers: dict, purposes: list[str],
                       categories: list[str], **details: Any) -> dict:
        person_key = self.person_key(identifiers)
        self.decide(user, "consent.record", {"person_key": person_key, "categories": categories},
                    purpose=purposes[0])
        record = self.consent.grant(
            person_key=person_key,
            purposes=purposes,
            categories=categories,
            controllers=details.get("controllers") or [user.organisation],
            collection_method=details.get("collection_method", "in_person_signed"),
            privacy_notice_version=details.get("privacy_notice_version", "1"),
            expires_at=details.get("expires_at"),
            recorded_by=user.id,
        )
        self.audit({"type": "consent.granted", "actor": user.subject(), "person_key": person_key,
                    "receipt_id": record.receipt_id, "purposes": list(purposes),
                    "categories": list(categories)})
        return {"receipt_id": record.receipt_id, "receipt": self.consent.receipt(record.receipt_id)}

    def consent_record(self, receipt_id: str):
        """A consent record by receipt id, else NotFound."""
        from consent import ConsentError

        try:
            return self.consent.record(receipt_id)
        except ConsentError as exc:
            raise NotFound(f"no consent receipt {receipt_id}") from exc

    def withdraw_consent(self, user: User, receipt_id: str):
        """Withdraw a consent (decided by policy first); effective for the next request."""
        with self.one_entry():
            record = self.consent_record(receipt_id)
            self.decide(user, "consent.record", {"person_key": record.person_key},
                        purpose=record.purposes[0] if record.purposes else None)
            record = self.consent.withdraw(receipt_id, by=user.id)
            self.audit({"type": "consent.withdrawn", "actor": user.subject(),
                        "person_key": record.person_key, "receipt_id": receipt_id})
            return record

    def create_referral(self, user: User, identifiers: dict, provider: str,
                        barriers: list[str], purpose: str) -> Referral:
        with self.one_entry():
            return self._create_referral(user, identifiers, provider, barriers, purpose)

    def _create_referral(self, user: User, identifiers: dict, provider: str,
                         barriers: list[str], purpose: str) -> Referral:
        identity = standardise_identifiers(identifiers)
        person_key = self.person_key(identity)
        referral = Referral(
            referral_id=f"ref-{uuid.uuid4().hex}",
            person_key=person_key,
            entity_id=self._resolve_entity(identity),
            provider=provider,
            barriers=sorted(set(barriers)),
            purpose=purpose,
            created_by=user.id,
            created_by_org=user.organisation,
            created_at=now_iso(),
            decision_id=None,
        )
        decision = self.decide(user, "referral.create", referral_resource(referral),
                               purpose=purpose, consent=self.consent_state(person_key, purpose))
        referral.decision_id = decision.decision_id
        self.add_referral(referral)
        self.audit({"type": "referral.created", "actor": user.subject(), "person_key": person_key,
                    "referral_id": referral.referral_id, "provider": provider,
                    "categories": referral.barriers, "decision_id": decision.decision_id})
        return referral

    def _resolve_entity(self, identifiers) -> str:
        """The linked person these identifiers name (collation's resolver), or NotFound."""
        try:
            from joinedup.collate import resolve_identifiers
        except ImportError as exc:
            raise NotAvailable("person resolution (joinedup.collate)") from exc
        resolution = resolve_identifiers(self, identifiers)
        if resolution.entity_id is None:
            raise NotFound(f"no single linked person for these identifiers ({resolution.outcome}: "
                           f"{resolution.reason})")
        return resolution.entity_id

    # -- audit (the audit concern's public functions) ------------------------------------
    def verify_ledger(self) -> dict:
        verify = _audit_function("verify_ledger", "verify")
        pem = self.ledger.public_key_path.read_bytes()  # opening the ledger writes it
        settings = self.home.ledger_settings
        return verify(self.home.ledger_dir, pem, checkpoint_every=settings.checkpoint_every,
                      witness=settings.witness).to_dict()

    def audit_report(self, start: str | None, end: str | None) -> dict:
        return _audit_function("build_report", "report")(self.ledger, start, end)

    def subject_access(self, person_key: str) -> list[dict]:
        return _audit_function("subject_access", "report")(self.ledger, person_key)

    def inclusion_proof(self, event_id: str) -> dict:
        from audit import LedgerError

        try:
            proof = self.ledger.inclusion_proof(event_id)
        except (LedgerError, IndexError, KeyError) as exc:
            raise NotFound(f"no event {event_id} in the ledger") from exc
        return proof

    # -- referrals (this concern's own table) ----------------------------------------
    def add_referral(self, referral: Referral) -> None:
        with self.store(write=True) as cur:
            cur.execute(
                "INSERT INTO referrals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    referral.referral_id,
                    referral.person_key,
                    referral.entity_id,
                    referral.provider,
                    json.dumps(referral.barriers),
                    referral.purpose,
                    referral.created_by,
                    referral.created_by_org,
                    referral.created_at,
                    referral.decision_id,
                ],
            )

    def get_referral(self, referral_id: str) -> Referral:
        with self.store() as cur:
            rows = cur.execute(
                "SELECT * FROM referrals WHERE referral_id = ?", [referral_id]
            ).fetchall()
        if not rows:
            raise NotFound(f"no referral {referral_id}")
        return _referral(rows[0])

    def referrals_for(self, provider: str) -> list[Referral]:
        with self.store() as cur:
            rows = cur.execute(
                "SELECT * FROM referrals WHERE provider = ? ORDER BY created_at, referral_id",
                [provider],
            ).fetchall()
        return [_referral(r) for r in rows]

    # -- linkage run -----------------------------------------------------------------
    def current_run_dir(self) -> Path:
        marker = self.home.runs_dir / "CURRENT"
        if not marker.exists():
            raise NotFound("no link run yet (run `joinedup link`)")
        run = self.home.runs_dir / marker.read_text().strip()
        if not run.is_dir():
            raise NotFound("the current link run is missing")
        return run


def referral_resource(referral: Referral) -> dict:
    """The policy input's `resource` for an action on this referral."""
    return {
        "person_key": referral.person_key,
        "categories": referral.barriers,
        "provider": referral.provider,
        "referred_to": [referral.provider],
    }


def _referral(row) -> Referral:
    return Referral(
        referral_id=row[0],
        person_key=row[1],
        entity_id=row[2],
        provider=row[3],
        barriers=json.loads(row[4]),
        purpose=row[5],
        created_by=row[6],
        created_by_org=row[7],
        created_at=row[8],
        decision_id=row[9],
    )


# -- openers of other concerns' objects (composition only) ---------------------------
def _open_policy_engine(home: Home):
    """The engine named by the home's `[policy]` settings; policy data from the home's
    `config/policy/` when the deployment has its own copy, else the shipped documents."""
    try:
        from policies.engine import engine_from_settings
    except ImportError as exc:
        raise NotAvailable("the policy engine (policies.PolicyEngine)") from exc
    data_dir = home.config_dir / "policy"
    return engine_from_settings(home.settings.get("policy", {}),
                                data_dir=data_dir if data_dir.is_dir() else None)


def _open_ledger(home: Home):
    return home.open_ledger()


def _audit_function(name: str, module: str):
    """A function of the audit concern's public surface (its package, else its module)."""
    import importlib

    for where in ("audit", f"audit.{module}"):
        try:
            fn = getattr(importlib.import_module(where), name, None)
        except ImportError:
            fn = None
        if fn is not None:
            return fn
    raise NotAvailable(f"audit.{name}")


def _open_consent(home: Home, shared: bool = False):
    try:
        from consent import ConsentStore, load_catalogue
    except ImportError as exc:
        raise NotAvailable("the consent store (consent.ConsentStore)") from exc
    return ConsentStore(home.store_path, signing_key_path=home.signing_key_path("consent"),
                        catalogue=load_catalogue(home.config_file("consent-catalogue.toml")),
                        shared=shared)
