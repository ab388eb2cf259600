"""Fixtures of the connector tests: a synthetic population, a real PostgreSQL database."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SCRIPT = REPO / "scripts" / "postgres.sh"

SYNTH_PEOPLE = 3000
SYNTH_SEED = 11


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """One synthetic population shared by the connector tests (read-only)."""
    from connectors.synth import write_synthetic_sources

    root = tmp_path_factory.mktemp("synth-shared")
    write_synthetic_sources(root, SYNTH_PEOPLE, seed=SYNTH_SEED)
    return root


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """A fresh database on the project's loopback PostgreSQL (started by scripts/postgres.sh).

    Skips only when the script is absent; if it exists but cannot start the server, the
    tests fail (CI must exercise the real server). Each session gets its own database, so
    concurrent test runs on one machine do not trip over each other; the server is left
    running for the next session (`scripts/postgres.sh stop` ends it).
    """
    if not POSTGRES_SCRIPT.exists():
        pytest.skip("scripts/postgres.sh is absent")
    done = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start"], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"scripts/postgres.sh start failed ({done.returncode}): {done.stderr.strip()}")
    server_dsn = done.stdout.strip().splitlines()[-1]

    import sqlalchemy as sa

    name = f"test_{secrets.token_hex(6)}"
    admin = sa.create_engine(server_dsn.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
