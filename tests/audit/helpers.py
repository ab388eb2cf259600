"""Shared helpers of the audit tests."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_signing_key(path: Path) -> Path:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    return path


def sample_event(i: int, etype: str = "summary.disclosed") -> dict:
    return {
        "type": etype,
        "time": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
        "actor": {"id": f"u{i % 3}", "role": "adviser", "organisation": f"csc-{i % 2}"},
        "person_key": f"{i:064x}",
        "purpose": "employment_support",
        "categories": ["MH", "HOU"],
    }


def id_at(ledger, index: int) -> str:
    """The event id the ledger gave the entry at this position (ids carry a random part)."""
    return next(ledger.events(index, index + 1))["event_id"]
