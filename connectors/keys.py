"""Keys: everything keyed derives from one master secret and the linkage project id.

HKDF-SHA256(master, salt=project_id, info="joinedup/v1/<purpose>") gives one key per
purpose, so tokens from two linkage projects cannot be joined, and every key has a
public id (an HMAC of a fixed label under the key, which reveals nothing about it).

Who holds what (see docs/KEYS.md): the key custodian and the source connectors hold the
master secret (every key derives from it); the linkage unit holds none (it compares
encodings and checks public key ids); the service holds only the derived keys of its row
(`SERVICE_PURPOSES`: content, person, audit, users, and the encoding keys its person
resolution needs), never the master secret or the ref key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SCHEME = "hkdf-sha256/v1"
MASTER_SECRET_BYTES = 32


class SecretError(Exception):
    """A secret is missing, unreadable or malformed."""


def new_master_secret() -> bytes:
    return secrets.token_bytes(MASTER_SECRET_BYTES)


def write_secret_file(path: Path, data: bytes) -> None:
    """Write a secret with 0600 permissions from the first byte (never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def read_master_secret(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"cannot read master secret {path}: {exc.strerror}") from exc
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise SecretError(f"master secret {path} is not hex") from exc
    if len(raw) != MASTER_SECRET_BYTES:
        raise SecretError(f"master secret {path} must be {MASTER_SECRET_BYTES} bytes")
    return raw


def derive_key(master: bytes, project_id: str, purpose: str, length: int = 32) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=project_id.encode("utf-8"),
        info=f"joinedup/v1/{purpose}".encode(),
    ).derive(master)


def key_id(key: bytes) -> str:
    """A public, stable identifier of a key that reveals nothing about it."""
    return hmac.new(key, b"joinedup key id", hashlib.sha256).hexdigest()[:16]


# The derived keys a service home holds (docs/KEYS.md): decrypting content, the person key,
# audit and user-token hashing, and what person resolution needs to encode an adviser's
# identifiers as the connectors do. Not the ref key (refs stay invertible by nobody but the
# source) and not the master secret.
ENCODING_PURPOSES = (
    "token/nhs_number", "token/nino", "match-key", "clk-salt", "clk/given", "clk/family", "clk/address",
    *(f"part/{g}" for g in ("given_canon", "family", "name_phon", "dob", "year", "month", "day",
                             "daymonth", "middle", "postcode", "sector", "district", "locality")),
)
SERVICE_PURPOSES = ("content", "person", "audit-hash", "users/token-hash", *ENCODING_PURPOSES)


@dataclass
class KeyRing:
    """The derived keys of one linkage project, created lazily and cached.

    Built from the master secret (custodian, connectors), or from a fixed set of derived
    keys (`KeyRing.of_keys`, a service home): then asking for any other purpose raises
    SecretError naming it.
    """

    master: bytes | None
    project_id: str
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def of_keys(cls, project_id: str, keys: dict[str, bytes]) -> KeyRing:
        return cls(None, project_id, dict(keys))

    def key(self, purpose: str) -> bytes:
        k = self._cache.get(purpose)
        if k is None:
            if self.master is None:
                raise SecretError(f"this home holds no {purpose!r} key (it is not part of its role)")
            k = derive_key(self.master, self.project_id, purpose)
            self._cache[purpose] = k
        return k

    def derived(self, purposes: tuple[str, ...]) -> dict[str, bytes]:
        """The derived keys of some purposes (to hand one party its row of the key table)."""
        return {p: self.key(p) for p in purposes}

    def key_id(self, purpose: str) -> str:
        return key_id(self.key(purpose))

    # The purposes in use, named once here so every module agrees on them.
    def token_key(self, field_name: str) -> bytes:
        return self.key(f"token/{field_name}")

    def clk_key(self, field_name: str) -> bytes:
        return self.key(f"clk/{field_name}")

    def blocking_key(self) -> bytes:
        return self.key("blocking")

    def content_key(self) -> bytes:
        return self.key("content")

    def person_key(self) -> bytes:
        return self.key("person")

    def audit_hash_key(self) -> bytes:
        return self.key("audit-hash")

    def key_ids(self) -> dict[str, str]:
        """Ids of the keys a manifest records (one id for the token/CLK family)."""
        return {
            "token": self.key_id("token/nhs_number"),
            "clk": self.key_id("clk/name"),
            "blocking": self.key_id("blocking"),
            "content": self.key_id("content"),
            "person": self.key_id("person"),
        }
