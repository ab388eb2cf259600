"""Keys: everything keyed derives from one master secret and the linkage project id.

HKDF-SHA256(master, salt=project_id, info="joinedup/v1/<purpose>") gives one key per
purpose, so tokens from two linkage projects cannot be joined, and every key has a
public id (an HMAC of a fixed label under the key, which reveals nothing about it).

Who holds what (see docs/KEYS.md): the source connectors hold the token, CLK, blocking,
person and content keys; the linkage unit holds none (it compares encodings); the
collation engine holds the content key; the audit party holds its signing key.
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


@dataclass
class KeyRing:
    """The derived keys of one linkage project, created lazily and cached."""

    master: bytes
    project_id: str
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def key(self, purpose: str) -> bytes:
        k = self._cache.get(purpose)
        if k is None:
            k = derive_key(self.master, self.project_id, purpose)
            self._cache[purpose] = k
        return k

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
