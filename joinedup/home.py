"""The deployment home: configuration, secrets, the embedded store and the ledger.

Layout (created by `joinedup init`):

    HOME/joinedup.toml          deployment settings (project id, paths, thresholds)
    HOME/config/                versioned configuration documents copied from defaults
                                (taxonomy, policy data, linkage settings); edit and re-approve
    HOME/secrets/master.key     the master secret (hex, 0600); every key derives from it
    HOME/secrets/*.key          signing keys (Ed25519, 0600)
    HOME/keys.json              public key ids and public keys (safe to publish)
    HOME/store.duckdb           the embedded store
    HOME/extracts/ HOME/runs/ HOME/ledger/

The `[audit]` table sets the ledger's checkpoint interval and the governance board's witness
directory (audit.LedgerSettings); `Home.open_ledger()` opens the ledger with them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from connectors.files import write_file_atomic
from connectors.keys import KeyRing, new_master_secret, read_master_secret, write_secret_file

DEFAULTS_DIR = Path(__file__).parent / "defaults"
CONFIG_SCHEMA_VERSION = 1


class HomeError(Exception):
    """The deployment home is missing or its configuration is invalid."""


def default_home() -> Path:
    return Path(os.environ.get("JOINEDUP_HOME", "./joinedup-home"))


def _default_settings(project_id: str, witness: Path | None = None) -> dict:
    from audit.ledger import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_SECONDS

    audit = {"checkpoint_every": DEFAULT_CHECKPOINT_EVERY, "checkpoint_seconds": DEFAULT_CHECKPOINT_SECONDS}
    if witness is not None:
        audit["witness"] = str(witness)
    return {
        "schema_version": CONFIG_SCHEMA_VERSION,
        "project_id": project_id,
        "deployment": "local",
        "policy": {"engine": "embedded", "opa_url": ""},
        "audit": audit,
    }


@dataclass
class Home:
    """An initialised deployment home. Paths only; each package opens what it needs."""

    root: Path
    settings: dict

    @property
    def project_id(self) -> str:
        return self.settings["project_id"]

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def store_path(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def extracts_dir(self) -> Path:
        return self.root / "extracts"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    @property
    def ledger_settings(self):
        """The validated `[audit]` table (audit.LedgerSettings); a relative witness path is
        taken from the home."""
        from audit import LedgerSettings

        return LedgerSettings.from_table(self.settings.get("audit"), base_dir=self.root)

    def open_ledger(self, signed: bool = True):
        """The audit ledger with this home's checkpoint settings and witness."""
        return self.ledger_settings.open(self.ledger_dir, self.signing_key_path("audit") if signed else None)

    def config_file(self, name: str) -> Path:
        """A configuration document: the home's copy, else the shipped default."""
        own = self.config_dir / name
        return own if own.exists() else DEFAULTS_DIR / name

    def keyring(self) -> KeyRing:
        return KeyRing(read_master_secret(self.secrets_dir / "master.key"), self.project_id)

    def signing_key_path(self, party: str) -> Path:
        """Ed25519 private key of a party ("audit", "consent"), created on first use."""
        path = self.secrets_dir / f"{party}-signing.key"
        if not path.exists():
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_secret_file(path, pem)
        return path


def init_home(root: Path, project_id: str | None = None, force: bool = False,
              witness: Path | None = None) -> Home:
    """Create a deployment home. Refuses to overwrite an existing one unless forced."""
    root = Path(root)
    settings_path = root / "joinedup.toml"
    if settings_path.exists() and not force:
        raise HomeError(f"{root} is already a joinedup home (use --force to re-create it)")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # the store, extracts and ledger inside are the deployment's own
    project_id = project_id or f"project-{secrets.token_hex(6)}"
    settings = _default_settings(project_id, witness)
    (root / "config").mkdir(exist_ok=True)
    for doc in sorted(DEFAULTS_DIR.iterdir()):
        if doc.is_file() and not doc.name.startswith("_"):
            shutil.copyfile(doc, root / "config" / doc.name)
    for sub in ("extracts", "runs", "ledger"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    write_secret_file(root / "secrets" / "master.key", new_master_secret().hex().encode())
    os.chmod(root / "secrets", 0o700)
    home = Home(root, settings)
    for party in ("audit", "consent"):
        home.signing_key_path(party)
    _create_store(home.store_path)
    os.chmod(home.store_path, 0o600)
    write_file_atomic(settings_path, tomli_w.dumps(settings).encode())
    public = {"project_id": project_id, "key_scheme": "hkdf-sha256/v1", "key_ids": home.keyring().key_ids()}
    write_file_atomic(root / "keys.json", json.dumps(public, indent=2).encode())
    return home


def load_home(root: Path | None = None) -> Home:
    root = Path(root) if root else default_home()
    settings_path = root / "joinedup.toml"
    if not settings_path.exists():
        raise HomeError(f"{root} is not a joinedup home (run `joinedup init --home {root}`)")
    try:
        settings = tomllib.loads(settings_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise HomeError(f"{settings_path}: invalid TOML: {exc}") from exc
    if settings.get("schema_version") != CONFIG_SCHEMA_VERSION:
        raise HomeError(
            f"{settings_path}: schema_version must be {CONFIG_SCHEMA_VERSION}, "
            f"got {settings.get('schema_version')!r}"
        )
    if not isinstance(settings.get("project_id"), str) or not settings["project_id"]:
        raise HomeError(f"{settings_path}: project_id must be a non-empty string")
    home = Home(root, settings)
    from audit import LedgerError

    try:
        home.ledger_settings  # noqa: B018 (validated on load, so a typo is caught at once)
    except LedgerError as exc:
        raise HomeError(f"{settings_path}: {exc}") from exc
    return home


def _create_store(path: Path) -> None:
    """Create the embedded DuckDB store with its metadata table; each concern adds its own."""
    import duckdb

    from connectors.files import StoreConnection

    with StoreConnection(path, duckdb.connect, shared=True).cursor() as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        con.execute(
            "INSERT OR REPLACE INTO store_meta VALUES ('schema_version', ?)",
            [str(CONFIG_SCHEMA_VERSION)],
        )


