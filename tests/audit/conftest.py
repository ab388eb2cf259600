"""Fixtures for the audit tests: a real signing key, a real ledger directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import Ledger
from tests.audit.helpers import write_signing_key


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    return write_signing_key(tmp_path / "audit-signing.key")


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def ledger(ledger_dir: Path, signing_key: Path):
    with Ledger(ledger_dir, signing_key, checkpoint_every=10) as led:
        yield led
