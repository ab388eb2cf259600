"""User management from the operator's command line: add and revoke API users.

These touch only the users file and the ledger (not the store), so they work while a server
holds the store open. The same protocol: decide (`users.manage`), record the event, then
write the users file. A crash between the two leaves a `user.added` event for a user whose
token was never shown or stored: nothing can log in with it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from joinedup.errors import Refused
from joinedup.home import Home
from joinedup.service_context import now_iso, open_ledger, open_policy_engine
from joinedup.users import User, open_user_store

OPERATOR = User(id="cli", role="admin", organisation="joinedup-ops")


@dataclass(frozen=True)
class AddUser:
    role: str
    organisation: str
    name: str = ""


def _decided(home: Home, caller: User, ledger) -> dict:
    decision = open_policy_engine(home).decide({
        "subject": caller.subject(), "action": "users.manage", "purpose": "administration",
        "resource": {}, "consent": {"status": "none"}, "time": now_iso()})
    folded = decision.to_audit_event(home.keyring().audit_hash_key())
    if not decision.allow:
        ledger.append(folded)
        raise Refused(list(decision.reasons), decision.decision_id)
    folded["decided_at"] = folded.pop("time")
    for key in ("type", "actor"):
        folded.pop(key)
    return folded


def add_user(home: Home, caller: User, request: AddUser) -> tuple[User, str]:
    """Create a user; returns it and its token (the only time the token is visible)."""
    store = open_user_store(home)
    store.check_new(request.role, request.organisation)
    with open_ledger(home) as ledger:
        decision = _decided(home, caller, ledger)
        user_id = f"u-{secrets.token_hex(6)}"
        ledger.append({"type": "user.added", "time": now_iso(), "actor": caller.subject(),
                       "user_id": user_id, "role": request.role,
                       "organisation": request.organisation.strip(), "decision": decision})
    return store.add(request.role, request.organisation, request.name, user_id=user_id)


def revoke_user(home: Home, caller: User, user_id: str) -> User:
    store = open_user_store(home)
    store.get(user_id)  # UserError for an unknown user, before anything is recorded
    with open_ledger(home) as ledger:
        decision = _decided(home, caller, ledger)
        ledger.append({"type": "user.revoked", "time": now_iso(), "actor": caller.subject(),
                       "user_id": user_id, "decision": decision})
    return store.revoke(user_id)
