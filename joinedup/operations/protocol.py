"""The one protocol every user action follows: authenticate, decide, record, apply, commit.

    with Action(ctx, caller, "consent.record", names_person=True) as act:
        act.check_text({"purposes": request.purposes})   # identifier-looking input: 422
        decision = act.decide(resource, purpose=..., consent=...)  # default deny
        act.record({...the effect, fully described...})   # the ledger event, durable
        apply(...)                                        # idempotent, keyed by the event

* authenticate: the front end turns a token (API), a `--as` user (CLI) or a demo user into
  a `Caller` before the action starts; an action never runs for nobody.
* decide: only the policy engine allows; an engine failure is a refusal. What a refusal
  tells depends on what the caller's role may know (`reveal`): the policy's reasons, or the
  same `Withheld` answer that a "not found" gets.
* record: the action's ONE ledger entry. An action that changes state writes its effect
  event *before* applying it, with everything needed to apply it again; the decision(s)
  ride inside it. An action that ends without such an event (refused, not found, invalid,
  failed, allowed but nothing disclosed) still writes exactly one entry, on exit.
* apply: idempotent (keyed by ids the event carries), so that `recovery.recover`, run when
  the service opens, can finish an effect whose event was written before a crash.

A value that looks like an identifier in a free-text or code field is invalid input: the
request is refused with the field and the reason, and recorded with the value redacted.
The ledger's guard never turns a request into a server error: an event it rejects is
recorded as a redacted `request.invalid` entry and the caller gets InvalidInput.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audit import EventRejected, check_event, find_identifiers
from joinedup.errors import (
    Conflict,
    InvalidIdentifiers,
    InvalidInput,
    NotAvailable,
    NotFound,
    OperationError,
    Refused,
    Withheld,
)
from joinedup.service_context import DEFAULT_PURPOSE, ServiceContext, now_iso
from joinedup.users import User

log = logging.getLogger("joinedup.operations")

Caller = User  # who is asking, authenticated by the front end
POLICY_FAILED = "The policy could not be evaluated, so nothing was done."

# Actions about one person: what their refusals say is limited (see `may_know_person`).
PERSON_ACTIONS = frozenset({"consent.record", "summary.request", "referral.create",
                            "referral.read", "audit.subject_access"})


def may_know_person(caller: Caller, consent: dict | None) -> bool:
    """May this caller learn facts about the person (consent status, found or not)?

    Only an adviser of the organisation that holds the person's consent (or, when the person
    has none yet, any adviser: the person is in front of them, giving it)."""
    if caller.role != "adviser":
        return False
    if consent is None or consent.get("status") in (None, "none"):
        return True
    return caller.organisation in (consent.get("controllers") or [])


def identifier_problems(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for every value in these fields that looks like an identifier (the
    ledger's own guard, audit.find_identifiers: the same rule the ledger applies)."""
    return [(f.field, f.reason) for f in find_identifiers(fields)]


@dataclass
class Action:
    """One user action: its decisions so far and its one ledger entry."""

    ctx: ServiceContext
    caller: Caller
    action: str
    purpose: str | None = None
    decisions: list = field(default_factory=list)
    event_id: str | None = None
    consent: dict | None = None  # the person's consent state, once looked up

    def __enter__(self) -> Action:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if self.event_id is None:
            self._record_outcome(exc)
        return False

    # -- decide ---------------------------------------------------------------------
    def decide(self, resource: dict | None = None, purpose: str | None = None,
               consent: dict | None = None, action: str | None = None,
               reveal: bool | None = None, refuse: bool = True):
        """Ask the policy (default deny: an engine failure refuses). On a refusal raise
        Refused with the reasons when the caller may know them, else Withheld."""
        purpose = purpose or self.purpose or DEFAULT_PURPOSE
        self.purpose = purpose
        if consent is not None:
            self.consent = consent
        policy_input: dict[str, Any] = {
            "subject": self.caller.subject(),
            "action": action or self.action,
            "purpose": purpose,
            "resource": resource or {},
            "consent": consent or {"status": "none"},
            "time": now_iso(),
        }
        try:
            decision = self.ctx.policy.decide(policy_input)
        except Exception as exc:  # default deny: no answer from the policy is a no
            log.error("policy engine failed (%s) on %s: refused", type(exc).__name__,
                      policy_input["action"])
            raise Refused([POLICY_FAILED]) from None
        self.decisions.append(decision)
        if refuse and not decision.allow:
            raise self.refusal(decision, reveal)
        return decision

    def refusal(self, decision, reveal: bool | None = None) -> OperationError:
        if reveal is None:
            reveal = self.reveals()
        if reveal:
            return Refused(list(decision.reasons), decision.decision_id)
        return Withheld(decision.decision_id)

    def reveals(self) -> bool:
        """May this caller be told why, or that something was not found?"""
        if self.action not in PERSON_ACTIONS:
            return True  # nothing about a person to give away: the reasons are about the role
        return may_know_person(self.caller, self.consent)

    def not_found(self, message: str) -> OperationError:
        """'Not found', as this caller may hear it."""
        if self.reveals():
            return NotFound(message)
        last = self.decisions[-1].decision_id if self.decisions else None
        return Withheld(last)

    # -- input ----------------------------------------------------------------------
    def check_text(self, fields: dict[str, Any]) -> None:
        """Free-text and code fields must not carry identifiers: InvalidInput (recorded)."""
        problems = identifier_problems(fields)
        if problems:
            raise InvalidInput("a free-text or code field looks like an identifier: "
                               + "; ".join(f"{f}: {r}" for f, r in problems), problems)

    # -- record ---------------------------------------------------------------------
    def record(self, event: dict[str, Any]) -> str:
        """Append the action's one entry, carrying the decisions made so far. Durable on
        return: only then may the effect be applied."""
        if self.event_id is not None:
            raise RuntimeError(f"{self.action}: the action's one entry is already written")
        event = {"time": now_iso(), "actor": self.caller.subject(), **event}
        if self.decisions and event.get("type") != "policy.decision":
            folded = [self._folded(d) for d in self.decisions]
            if len(folded) == 1:
                event["decision"] = folded[0]
                event.setdefault("decision_id", folded[0]["decision_id"])
            else:
                event["decisions"] = folded
        try:
            # Strict: an effect event must be stored as it is (recovery applies it again from
            # the ledger), so one the ledger would redact is refused here, as invalid input.
            check_event(event)
            self.event_id = self.ctx.ledger.append(event)
        except EventRejected as exc:
            # The guard found an identifier in what we were about to record: record the
            # request as invalid instead, without the value, and tell the caller.
            self.event_id = self.record_invalid([("event", _reason_only(str(exc)))])
            raise InvalidInput("the request carries a value that looks like an identifier",
                               [("request", _reason_only(str(exc)))]) from None
        return self.event_id

    def _folded(self, decision) -> dict:
        event = decision.to_audit_event(self.ctx.keyring.audit_hash_key())
        event["decided_at"] = event.pop("time", None)
        for key in ("type", "actor"):
            event.pop(key, None)
        return event

    def decision_event(self, **extra: Any) -> dict:
        last = self.decisions[-1]
        event = last.to_audit_event(self.ctx.keyring.audit_hash_key())
        if len(self.decisions) > 1:
            event["decisions"] = [self._folded(d) for d in self.decisions[:-1]]
        return {**event, **extra}

    def _record_outcome(self, exc: BaseException | None) -> None:
        """The one entry of an action that wrote none: its decision with the outcome, or,
        before any decision, the request and why it went no further."""
        outcome = _outcome_of(exc)
        try:
            if self.decisions:
                extra: dict[str, Any] = {}
                if outcome != "completed" or self.decisions[-1].allow:
                    extra["outcome"] = outcome
                if isinstance(exc, InvalidInput):
                    extra["problems"] = [{"field": f, "reason": r} for f, r in exc.problems]
                if outcome == "failed":
                    extra["error"] = type(exc).__name__
                event = self.decision_event(**extra)
                event.setdefault("time", now_iso())
                self.event_id = self.ctx.ledger.append(event)
            elif isinstance(exc, InvalidInput):
                self.event_id = self.record_invalid(exc.problems)
            else:
                self.event_id = self.ctx.ledger.append({
                    "type": "request.failed" if outcome == "failed" else "request.ended",
                    "time": now_iso(), "actor": self.caller.subject(), "action": self.action,
                    "purpose": _safe_code(self.purpose), "outcome": outcome,
                    **({"error": type(exc).__name__} if exc is not None else {}),
                })
        except EventRejected as rejected:
            self.event_id = self.record_invalid([("event", _reason_only(str(rejected)))])

    def record_invalid(self, problems: list[tuple[str, str]]) -> str:
        """A `request.invalid` entry: the fields and reasons, never a value."""
        event = {"type": "request.invalid", "time": now_iso(), "actor": self.caller.subject(),
                 "action": self.action, "purpose": _safe_code(self.purpose),
                 "problems": [{"field": _safe_code(f) or "[redacted]", "reason": r}
                              for f, r in problems]}
        try:
            return self.ctx.ledger.append(event)
        except EventRejected:  # a field name or reason itself looked like one
            event["problems"] = [{"field": "[redacted]", "reason": "[redacted]"}]
            return self.ctx.ledger.append(event)


def _outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "completed"
    for kind, name in ((Refused, "refused"), (Withheld, "withheld"), (NotFound, "not_found"),
                       (InvalidIdentifiers, "invalid"), (InvalidInput, "invalid"),
                       (Conflict, "conflict"), (NotAvailable, "not_available")):
        if isinstance(exc, kind):
            return name
    return "failed"


def _reason_only(message: str) -> str:
    """The guard's message without the field path, which may quote a dict key of input."""
    return message.rsplit(": ", 1)[-1]


def _safe_code(value: str | None) -> str | None:
    """A code to record, or None when it looks like an identifier itself."""
    if value is None or find_identifiers({"value": value}):
        return None
    return value


def run_action(ctx: ServiceContext, caller: Caller, action: str,
               body: Callable[[Action], Any], purpose: str | None = None) -> Any:
    """`body(act)` inside one Action scope (for callers that prefer a function)."""
    with Action(ctx, caller, action, purpose) as act:
        return body(act)
