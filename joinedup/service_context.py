"""What one service process holds open: the home, one DuckDB connection, the policy
engine, the ledger, the consent store, the users. Handles only: the user actions that use
them are in joinedup/operations/ (open one with `joinedup.operations.open_service`, which
also finishes any action a crash interrupted).

The DuckDB store: one process (`shared=False`: the CLI, the demo, a one-process server)
keeps one connection open, and each operation takes its own cursor from it, so threads never
share a cursor. Several server processes on one home (`shared=True`, `joinedup serve
--workers N`) open the store per operation and take turns through its gate
(connectors.files.StoreGate); what they cache from it (the consent index, the active
extracts) is re-read when the gate's write generation moves, so a write in one process
(a withdrawal, say) is seen by the next request in every process. The ledger is itself
thread and process safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from audit import Ledger
from connectors.files import StoreConnection
from connectors.keys import KeyRing
from connectors.pseudonymise import person_key_of
from connectors.standardise import standardise_identity
from consent import ConsentStore, load_catalogue
from joinedup.errors import InvalidIdentifiers, NotFound
from joinedup.home import Home
from joinedup.users import Authenticator, open_authenticator
from policies import PolicyEngine, engine_from_settings

T = TypeVar("T")

DEFAULT_PURPOSE = "employment_support"
PERSON_KEY_FIELDS = {"given_name": "given_canon", "family_name": "family", "date_of_birth": "dob"}

REFERRALS_DDL = """
CREATE TABLE IF NOT EXISTS referrals (
    referral_id VARCHAR PRIMARY KEY,
    person_key VARCHAR NOT NULL,
    entity_id VARCHAR,
    provider VARCHAR NOT NULL,
    barriers VARCHAR NOT NULL,      -- JSON list of barrier codes the provider is asked to address
    purpose VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    created_by_org VARCHAR NOT NULL,
    created_at VARCHAR NOT NULL,
    decision_id VARCHAR
)
"""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def standardise_identifiers(identifiers: dict):
    """The person in front of the adviser, standardised by the connectors' own standardiser
    (so the API accepts exactly what an extract accepts). Raises InvalidIdentifiers for a
    field the caller gave that the standardiser refused, or a missing person-key field."""
    raw = {k: v for k, v in identifiers.items() if k != "local_id"}
    ident, found = standardise_identity(raw)
    given = {k for k, v in raw.items() if isinstance(v, str) and v.strip()}
    problems = [(p.field, p.reason) for p in found if not p.fatal and p.field in given]
    refused = {f for f, _ in problems}
    for name, attr in PERSON_KEY_FIELDS.items():
        if getattr(ident, attr) is None and name not in refused:
            problems.append((name, "missing (needed to identify the person)"))
    if problems:
        raise InvalidIdentifiers(problems)
    return ident


class ServiceContext:
    """Opened once per process; every user action goes through it."""

    def __init__(self, home: Home, shared: bool = False) -> None:
        self.home = home
        self.shared = shared
        self._store = StoreConnection(home.store_path, duckdb.connect, shared=shared)
        self._gate = self._store.gate
        for path in (home.store_path, home.store_path.with_name(home.store_path.name + ".wal")):
            if path.exists():
                path.chmod(0o600)  # readable by the service's own user only
        with self.store() as cur:  # creating a table changes nothing anyone caches: no bump
            cur.execute(REFERRALS_DDL)
        self._lazy_lock = threading.Lock()
        self._extracts_cache: tuple[int, list[tuple]] | None = None
        self._snapshots: dict[str, tuple[int, Any]] = {}
        self.auth: Authenticator = open_authenticator(home)
        self._policy: PolicyEngine | None = None
        self._ledger: Ledger | None = None
        self._consent: ConsentStore | None = None
        self._keyring: KeyRing = home.keyring()

    # -- shared handles -------------------------------------------------------------
    def store(self, write: bool = False):
        """A cursor on the store for one operation; see connectors.files.StoreConnection."""
        return self._store.cursor(write)

    def active_extract_rows(self) -> list[tuple]:
        """(source, kind, extract_id, manifest) of every active extract; read again only
        after a write to the store (an ingest, in any process)."""
        generation = self._gate.generation()
        cached = self._extracts_cache
        if cached is not None and cached[0] == generation:
            return cached[1]
        with self.store() as cur:
            generation = self._gate.generation()
            rows = cur.execute(
                "SELECT source, kind, extract_id, manifest FROM extracts WHERE active"
            ).fetchall()
        self._extracts_cache = (generation, rows)
        return rows

    def store_snapshot(self, name: str, load: Callable[[Any], T]) -> T:
        """`load(cursor)`, kept and read again only after a write to the store by any
        process (the gate's write generation moved). `load` must build new objects and
        callers must not change what they get: it is shared by later requests."""
        generation = self._gate.generation()
        cached = self._snapshots.get(name)
        if cached is not None and cached[0] == generation:
            return cached[1]
        with self.store() as cur:
            # Read inside: a write that lands after this read bumps it again, so a
            # snapshot is never kept under a generation newer than what it read.
            generation = self._gate.generation()
            value = load(cur)
        self._snapshots[name] = (generation, value)
        return value

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    @property
    def audit_hash_key(self) -> bytes:
        return self._keyring.audit_hash_key()

    @property
    def policy(self) -> PolicyEngine:
        if self._policy is None:
            with self._lazy_lock:
                if self._policy is None:
                    self._policy = open_policy_engine(self.home)
        return self._policy

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            with self._lazy_lock:
                if self._ledger is None:
                    self._ledger = open_ledger(self.home)
        return self._ledger

    @property
    def consent(self) -> ConsentStore:
        if self._consent is None:
            with self._lazy_lock:
                if self._consent is None:
                    self._consent = open_consent(self.home, self.shared)
        return self._consent

    def close(self) -> None:
        for obj in (self._ledger, self._consent):
            if obj is not None:
                obj.close()
        self._store.close()

    # -- identities -----------------------------------------------------------------
    def person_key(self, identifiers) -> str:
        """Pseudonymise the identifiers of the person in front of the adviser at once
        (a raw dict, or one already standardised by `standardise_identifiers`)."""
        ident = standardise_identifiers(identifiers) if isinstance(identifiers, dict) else identifiers
        return person_key_of(self.keyring, ident)

    # -- linkage run -----------------------------------------------------------------
    def current_run_dir(self) -> Path:
        marker = self.home.runs_dir / "CURRENT"
        if not marker.exists():
            raise NotFound("no link run yet (run `joinedup link`)")
        run = self.home.runs_dir / marker.read_text().strip()
        if not run.is_dir():
            raise NotFound("the current link run is missing")
        return run


class HomeContext:
    """A home's policy engine, ledger and keys without its store: for the actions that
    write files a running server does not hold (ingest, link, users), so that they work
    beside it. Actions take it where they take a ServiceContext."""

    def __init__(self, home: Home) -> None:
        self.home = home
        # Not a KeyRing: a linkage-unit home links and records without any project key.
        self.audit_hash_key: bytes = home.audit_hash_key()
        self._policy: PolicyEngine | None = None
        self._ledger: Ledger | None = None

    @property
    def policy(self) -> PolicyEngine:
        if self._policy is None:
            self._policy = open_policy_engine(self.home)
        return self._policy

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = open_ledger(self.home)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()

    def __enter__(self) -> HomeContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- openers of other concerns' objects (composition only) ---------------------------
def open_policy_engine(home: Home) -> PolicyEngine:
    """The engine named by the home's `[policy]` settings; policy data from the home's
    `config/policy/` when the deployment has its own copy, else the shipped documents."""
    data_dir = home.config_dir / "policy"
    return engine_from_settings(home.settings.get("policy", {}),
                                data_dir=data_dir if data_dir.is_dir() else None)


def open_ledger(home: Home) -> Ledger:
    """The home's ledger, with its checkpoint settings and witness (joinedup.toml)."""
    return home.open_ledger()


def open_consent(home: Home, shared: bool = False) -> ConsentStore:
    return ConsentStore(home.store_path, signing_key_path=home.signing_key_path("consent"),
                        catalogue=load_catalogue(home.config_file("consent-catalogue.toml")),
                        shared=shared)
