"""The deployment home: configuration, secrets, the embedded store and the ledger.

Layout (created by `joinedup init`):

    HOME/joinedup.toml          deployment settings (project id, paths, thresholds)
    HOME/config/                versioned configuration documents copied from defaults
                                (taxonomy, policy data, linkage settings); edit and re-approve
    HOME/secrets/master.key     the master secret (hex, 0600); every key derives from it
                                (roles "all" and "connector" only)
    HOME/secrets/service-keys.json  the derived keys of the service's row (role "service")
    HOME/secrets/*.key          signing keys (Ed25519, 0600)
    HOME/keys.json              public key ids and public keys (safe to publish)
    HOME/store.duckdb           the embedded store
    HOME/extracts/ HOME/runs/ HOME/ledger/

The `[audit]` table sets the ledger's checkpoint interval and the governance board's witness
directory (audit.LedgerSettings); `Home.open_ledger()` opens the ledger with them.

Roles (`joinedup init --role`, docs/KEYS.md): "all" (the demo: one home, every key),
"connector" (an agency: the master secret, to pseudonymise and encrypt), "linkage" (the
linkage unit: no master secret and no derived key; only the public key ids, to check that
extracts belong to the project), "service" (collation and the API: only its derived keys).
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
from connectors.keys import (
    SERVICE_PURPOSES,
    KeyRing,
    SecretError,
    new_master_secret,
    read_master_secret,
    write_secret_file,
)

DEFAULTS_DIR = Path(__file__).parent / "defaults"
CONFIG_SCHEMA_VERSION = 1
ROLES = ("all", "connector", "linkage", "service")


class HomeError(Exception):
    """The deployment home is missing or its configuration is invalid."""


def default_home() -> Path:
    return Path(os.environ.get("JOINEDUP_HOME", "./joinedup-home"))


def _default_settings(project_id: str, role: str = "all", witness: Path | None = None) -> dict:
    from audit.ledger import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_SECONDS

    audit = {"checkpoint_every": DEFAULT_CHECKPOINT_EVERY, "checkpoint_seconds": DEFAULT_CHECKPOINT_SECONDS}
    if witness is not None:
        audit["witness"] = str(witness)
    return {
        "schema_version": CONFIG_SCHEMA_VERSION,
        "project_id": project_id,
        "role": role,
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

    @property
    def role(self) -> str:
        return self.settings.get("role", "all")

    def keyring(self) -> KeyRing:
        """This home's keys; a linkage-unit home has none (SecretError says so)."""
        if self.role == "linkage":
            raise SecretError(f"{self.root} is a linkage-unit home: it holds no keys")
        if self.role == "service":
            return KeyRing.of_keys(self.project_id, _read_derived(self.secrets_dir / "service-keys.json"))
        return KeyRing(read_master_secret(self.secrets_dir / "master.key"), self.project_id)

    def public_key_ids(self) -> dict[str, str]:
        """The project's public key ids (keys.json): what an extract's manifest must show."""
        try:
            doc = json.loads((self.root / "keys.json").read_text())
        except (OSError, ValueError) as exc:
            raise HomeError(f"{self.root / 'keys.json'}: cannot read the public key ids ({exc})") from exc
        if doc.get("project_id") != self.project_id or not isinstance(doc.get("key_ids"), dict):
            raise HomeError(f"{self.root / 'keys.json'}: not the key ids of project {self.project_id!r}")
        return doc["key_ids"]

    @property
    def keeps_content(self) -> bool:
        """Whether ingest keeps content files here (never in a linkage-unit home)."""
        return self.role != "linkage"

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


def _read_derived(path: Path) -> dict[str, bytes]:
    try:
        doc = json.loads(path.read_text())
        return {purpose: bytes.fromhex(hexkey) for purpose, hexkey in doc["keys"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise SecretError(f"cannot read the service keys {path}: {exc}") from exc


def init_home(
    root: Path,
    project_id: str | None = None,
    force: bool = False,
    role: str = "all",
    keys_from: Path | None = None,
    witness: Path | None = None,
) -> Home:
    """Create a deployment home. Refuses to overwrite an existing one unless forced.

    `role` "all" and "connector" make a new master secret unless `keys_from` names a home
    holding the project's master secret (the key custodian's), whose secret and project id
    are then used. "linkage" needs `keys_from` (a home or its keys.json) for the public key
    ids only; "service" needs a home with the master secret to derive its keys from.
    `witness` is the governance board's directory for copies of the audit checkpoints.
    """
    if role not in ROLES:
        raise HomeError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    root = Path(root)
    settings_path = root / "joinedup.toml"
    if settings_path.exists() and not force:
        raise HomeError(f"{root} is already a joinedup home (use --force to re-create it)")
    source_ring, public = _keys_source(keys_from, role)
    if source_ring is not None or public is not None:
        given = project_id
        project_id = (source_ring.project_id if source_ring is not None else public["project_id"])
        if given and given != project_id:
            raise HomeError(f"--project-id {given!r} differs from {keys_from}'s project {project_id!r}")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # the store, extracts and ledger inside are the deployment's own
    project_id = project_id or f"project-{secrets.token_hex(6)}"
    settings = _default_settings(project_id, role, witness)
    (root / "config").mkdir(exist_ok=True)
    for doc in sorted(DEFAULTS_DIR.iterdir()):
        if doc.is_file() and not doc.name.startswith("_"):
            shutil.copyfile(doc, root / "config" / doc.name)
    for sub in ("extracts", "runs", "ledger"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    (root / "secrets").mkdir(mode=0o700, exist_ok=True)
    os.chmod(root / "secrets", 0o700)
    if role in ("all", "connector"):
        master = source_ring.master if source_ring is not None else new_master_secret()
        write_secret_file(root / "secrets" / "master.key", master.hex().encode())
        key_ids = KeyRing(master, project_id).key_ids()
    elif role == "service":
        derived = {p: k.hex() for p, k in source_ring.derived(SERVICE_PURPOSES).items()}
        write_secret_file(root / "secrets" / "service-keys.json",
                          json.dumps({"project_id": project_id, "keys": derived}, indent=2).encode())
        key_ids = source_ring.key_ids()
    else:  # linkage: public ids only
        key_ids = public["key_ids"]
    home = Home(root, settings)
    if role in ("all", "service"):
        home.signing_key_path("consent")
    _create_store(home.store_path)
    os.chmod(home.store_path, 0o600)
    write_file_atomic(settings_path, tomli_w.dumps(settings).encode())
    doc = {"project_id": project_id, "key_scheme": "hkdf-sha256/v1", "key_ids": key_ids}
    write_file_atomic(root / "keys.json", json.dumps(doc, indent=2).encode())
    return home


def _keys_source(keys_from: Path | None, role: str) -> tuple[KeyRing | None, dict | None]:
    """(keyring with the master secret, or public key ids document) that `keys_from` gives."""
    if keys_from is None:
        if role in ("linkage", "service"):
            raise HomeError(f"a {role} home needs --keys-from (the key custodian's home"
                            f"{' or keys.json' if role == 'linkage' else ''})")
        return None, None
    keys_from = Path(keys_from)
    if role == "linkage":
        path = keys_from if keys_from.is_file() else keys_from / "keys.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HomeError(f"{path}: cannot read public key ids ({exc})") from exc
        if not isinstance(doc.get("project_id"), str) or not isinstance(doc.get("key_ids"), dict):
            raise HomeError(f"{path}: not a keys.json (project_id and key_ids expected)")
        return None, {"project_id": doc["project_id"], "key_ids": doc["key_ids"]}
    source = load_home(keys_from)
    if source.role not in ("all", "connector"):
        raise HomeError(f"{keys_from} holds no master secret (role {source.role})")
    return source.keyring(), None


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


