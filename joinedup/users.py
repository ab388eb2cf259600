"""Users of the service and how they prove who they are.

Two ways in:

* API tokens: `joinedup users add --role R --org O` makes a 256-bit random token, prints it
  once and stores only HMAC-SHA256(users key, token), the key derived (HKDF) from the
  home's master secret. A stolen users file therefore cannot be used to log in, nor
  brute-forced offline without the master secret.
* OIDC: an identity provider's JWT, verified against a JWKS (file or URL) configured in
  the home's `joinedup.toml` under `[auth.oidc]`; role and organisation come from claims.

The users file is JSON (`HOME/users.json`), not a DuckDB table, so `users add/revoke` work
while a server holds the store open; the server re-reads it when it changes, so a
revocation takes effect on the next request.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROLES = ("data_officer", "adviser", "provider", "governance", "admin", "citizen")
TOKEN_PREFIX = "ju_"
USERS_FILE = "users.json"
USERS_SCHEMA_VERSION = 1


class UserError(Exception):
    """A users-file or user-management problem (bad role, unknown user, corrupt file)."""


class AuthError(Exception):
    """The caller could not be identified (maps to HTTP 401)."""


@dataclass(frozen=True)
class User:
    """Who is asking: the policy input's `subject`."""

    id: str
    role: str
    organisation: str
    name: str = ""
    created_at: str = ""
    revoked_at: str | None = None

    def subject(self) -> dict:
        return {"id": self.id, "role": self.role, "organisation": self.organisation}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()


class UserStore:
    """The users file of one home. Thread safe; safe against concurrent CLI processes
    (an exclusive flock around every read-modify-write)."""

    def __init__(self, path: Path, hash_key: bytes) -> None:
        self.path = Path(path)
        self._key = hash_key
        self._lock = threading.Lock()
        self._cache_stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, User] = {}

    # -- file handling -------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict:
        if not self.path.exists():
            return {"schema_version": USERS_SCHEMA_VERSION, "users": []}
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.path}: cannot read users file: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("schema_version") != USERS_SCHEMA_VERSION:
            raise UserError(f"{self.path}: schema_version must be {USERS_SCHEMA_VERSION}")
        if not isinstance(doc.get("users"), list):
            raise UserError(f"{self.path}: 'users' must be a list")
        return doc

    def _write(self, doc: dict) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # -- management ----------------------------------------------------------------
    def check_new(self, role: str, organisation: str) -> None:
        """UserError unless a user of this role and organisation can be added."""
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not organisation or not organisation.strip():
            raise UserError("organisation must not be empty")

    def get(self, user_id: str) -> User:
        for user in self.list():
            if user.id == user_id:
                return user
        raise UserError(f"no user {user_id!r}")

    def add(self, role: str, organisation: str, name: str = "",
            user_id: str | None = None) -> tuple[User, str]:
        """Create a user; returns the user and its token (the only time it is visible)."""
        self.check_new(role, organisation)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits of randomness
        user = User(
            id=user_id or f"u-{uuid.uuid4().hex[:12]}",
            role=role,
            organisation=organisation.strip(),
            name=name.strip(),
            created_at=_now(),
        )
        with self._locked():
            doc = self._read()
            doc["users"].append({**asdict(user), "token_hash": token_hash(self._key, token)})
            self._write(doc)
        return user, token

    def revoke(self, user_id: str) -> User:
        with self._locked():
            doc = self._read()
            for row in doc["users"]:
                if row["id"] == user_id:
                    if row.get("revoked_at") is None:
                        row["revoked_at"] = _now()
                        self._write(doc)
                    return _user(row)
        raise UserError(f"no user {user_id!r}")

    def list(self) -> list[User]:
        return [_user(row) for row in self._read()["users"]]

    # -- authentication ------------------------------------------------------------
    def authenticate(self, token: str) -> User:
        """The active user holding this token, else AuthError."""
        if not token.startswith(TOKEN_PREFIX):
            raise AuthError("not a joinedup API token")
        digest = token_hash(self._key, token)
        user = self._index().get(digest)
        if user is None:
            raise AuthError("unknown or revoked token")
        return user

    def _index(self) -> dict[str, User]:
        """Active users by token hash, re-read whenever the file changes."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp != self._cache_stamp:
                rows = self._read()["users"] if stamp != (0, 0) else []
                self._by_hash = {
                    row["token_hash"]: _user(row) for row in rows if row.get("revoked_at") is None
                }
                self._cache_stamp = stamp
            return self._by_hash


def _user(row: dict) -> User:
    return User(
        id=row["id"],
        role=row["role"],
        organisation=row["organisation"],
        name=row.get("name", ""),
        created_at=row.get("created_at", ""),
        revoked_at=row.get("revoked_at"),
    )


# -- OIDC ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OidcConfig:
    """`[auth.oidc]` in joinedup.toml."""

    issuer: str
    audience: str
    jwks: str  # a file path (relative to the home) or an https URL
    role_claim: str = "joinedup_role"
    org_claim: str = "joinedup_org"
    algorithms: tuple[str, ...] = ("RS256", "ES256")

    @classmethod
    def from_settings(cls, settings: dict, home_root: Path) -> OidcConfig | None:
        section = settings.get("auth", {}).get("oidc")
        if section is None:
            return None
        if not isinstance(section, dict):
            raise UserError("joinedup.toml: [auth.oidc] must be a table")
        missing = [k for k in ("issuer", "audience", "jwks") if not section.get(k)]
        if missing:
            raise UserError(f"joinedup.toml: [auth.oidc] is missing {', '.join(missing)}")
        jwks = str(section["jwks"])
        if not jwks.startswith(("https://", "http://")):
            path = Path(jwks)
            jwks = str(path if path.is_absolute() else home_root / path)
        algorithms = section.get("algorithms", ["RS256", "ES256"])
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise UserError("joinedup.toml: [auth.oidc] algorithms must be a list of strings")
        return cls(
            issuer=str(section["issuer"]),
            audience=str(section["audience"]),
            jwks=jwks,
            role_claim=str(section.get("role_claim", "joinedup_role")),
            org_claim=str(section.get("org_claim", "joinedup_org")),
            algorithms=tuple(algorithms),
        )


class OidcVerifier:
    """Verifies identity-provider JWTs (signature, issuer, audience, expiry)."""

    def __init__(self, config: OidcConfig) -> None:
        import jwt

        self.config = config
        self._jwt = jwt
        if config.jwks.startswith(("https://", "http://")):
            self._client = jwt.PyJWKClient(config.jwks, cache_keys=True)
            self._keyset = None
        else:
            self._client = None
            try:
                self._keyset = jwt.PyJWKSet.from_json(Path(config.jwks).read_text())
            except (OSError, jwt.exceptions.PyJWKSetError) as exc:
                raise UserError(f"cannot load JWKS {config.jwks}: {exc}") from exc

    def _signing_key(self, token: str):
        jwt = self._jwt
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keyset.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise AuthError("token signed by an unknown key")

    def authenticate(self, token: str) -> User:
        jwt = self._jwt
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.exceptions.PyJWTError as exc:
            raise AuthError(f"invalid identity token: {exc}") from exc
        role = claims.get(self.config.role_claim)
        org = claims.get(self.config.org_claim)
        if role not in ROLES or not isinstance(org, str) or not org:
            raise AuthError("identity token lacks a known role or an organisation claim")
        return User(id=f"oidc:{claims['sub']}", role=role, organisation=org)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(TOKEN_PREFIX)


class Authenticator:
    """Bearer token → User: our own API tokens, else an OIDC JWT when configured."""

    def __init__(self, users: UserStore, oidc: OidcVerifier | None = None) -> None:
        self.users = users
        self.oidc = oidc

    def authenticate(self, authorization: str | None) -> User:
        if not authorization:
            raise AuthError("missing Authorization header (use: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be: Bearer <token>")
        token = token.strip()
        if looks_like_jwt(token):
            if self.oidc is None:
                raise AuthError("OIDC identity tokens are not enabled on this service")
            return self.oidc.authenticate(token)
        return self.users.authenticate(token)


def users_hash_key(keyring) -> bytes:
    """The key that hashes API tokens (derived, so it never sits on disk by itself)."""
    return keyring.key("users/token-hash")


def open_user_store(home) -> UserStore:
    return UserStore(home.root / USERS_FILE, users_hash_key(home.keyring()))


def open_authenticator(home) -> Authenticator:
    oidc = OidcConfig.from_settings(home.settings, home.root)
    return Authenticator(open_user_store(home), OidcVerifier(oidc) if oidc else None)
