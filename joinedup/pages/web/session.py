"""The pages' session: one encrypted, authenticated cookie (AES-GCM under a key derived from
the deployment's master secret), so any worker process can read it and nothing in it is
readable or changeable by the browser.

It holds the bearer token the user signed in with (checked again on every request, so a
revoked user or an expired OIDC token is signed out at once), the CSRF token of every form,
and, for an adviser, the identifiers of the person in front of them: raw identifiers never
go into a URL, a log or the store, only into this cookie (HttpOnly, SameSite=Strict, Secure
over TLS) for the length of the visit, and "Finish with this person" or sign-out drops them.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "joinedup_session"
SESSION_SECONDS = 8 * 3600  # a working day; the token is re-checked on every request anyway
_AAD = b"joinedup-web-session-v1"


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token: str | None = None
    person: dict[str, str] | None = None
    flash: str | None = None
    expires: float = field(default_factory=lambda: time.time() + SESSION_SECONDS)

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, sent or "")


class SessionCodec:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def dump(self, session: Session) -> str:
        nonce = os.urandom(12)
        body = json.dumps(session.__dict__, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, _AAD)).decode()

    def load(self, cookie: str | None) -> Session | None:
        """The session in the cookie, or None when it is absent, forged, or expired."""
        if not cookie:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie.encode())
            doc: dict[str, Any] = json.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            session = Session(**doc)
        except (ValueError, TypeError, InvalidTag):
            return None
        if session.expires < time.time():
            return None
        return session


def cookie_settings(secure: bool) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}
