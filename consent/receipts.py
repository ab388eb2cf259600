"""Signed consent receipts (Ed25519) the citizen can keep, and their verification.

The receipt follows the Kantara Consent Receipt v1.1 field names (consentReceiptID,
piiPrincipalId, piiControllers, services/purposes/piiCategory, sensitive, spiCat) with the
ISO/IEC TS 27560 record's lifecycle fields (given, expires, withdrawn). It carries the
pseudonymous person key, never an identifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_ALGORITHM = "Ed25519"


class ReceiptError(Exception):
    """A receipt could not be signed (missing or unreadable key)."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ReceiptError(f"cannot read the consent signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptError(f"{path} is not an Ed25519 private key")
    return key


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signing_key_id(public_raw: bytes) -> str:
    """A public id of the signing key (a hash of the public key; nothing secret)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def sign_receipt(receipt: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    public_raw = public_key_bytes(key)
    return {
        "receipt": receipt,
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_id": signing_key_id(public_raw),
            "public_key": base64.b64encode(public_raw).decode(),
            "value": base64.b64encode(key.sign(canonical_json(receipt))).decode(),
        },
    }


def verify_receipt(signed: dict[str, Any], public_key: bytes | None = None) -> bool:
    """True if the receipt is unaltered and signed by the key. Pass the consent service's
    published public key (raw 32 bytes) to check who signed it; without it, only integrity
    under the key embedded in the receipt is checked."""
    try:
        receipt = signed["receipt"]
        signature = signed["signature"]
        if signature.get("algorithm") != SIGNATURE_ALGORITHM:
            return False
        embedded = base64.b64decode(signature["public_key"], validate=True)
        if public_key is not None and public_key != embedded:
            return False
        if signature.get("key_id") != signing_key_id(embedded):
            return False
        value = base64.b64decode(signature["value"], validate=True)
        Ed25519PublicKey.from_public_bytes(embedded).verify(value, canonical_json(receipt))
        return True
    except (KeyError, TypeError, ValueError, AttributeError, InvalidSignature):
        return False
