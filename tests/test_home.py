"""The deployment home: `joinedup init` creates configuration, secrets and the store."""

from __future__ import annotations

import json
import stat

import duckdb
import pytest
from click.testing import CliRunner

from connectors.keys import KeyRing, SecretError, read_master_secret
from joinedup.cli import cli
from joinedup.home import HomeError, init_home, load_home


def test_init_creates_home_with_private_secrets(tmp_path):
    root = tmp_path / "home"
    result = CliRunner().invoke(cli, ["init", "--home", str(root), "--project-id", "p-test"])
    assert result.exit_code == 0, result.output
    home = load_home(root)
    assert home.project_id == "p-test"
    for secret in (home.secrets_dir / "master.key", home.signing_key_path("audit")):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.secrets_dir.stat().st_mode) == 0o700
    public = json.loads((root / "keys.json").read_text())
    assert public["key_ids"] == home.keyring().key_ids()
    # The public file names keys by id only: no key material.
    master_hex = (home.secrets_dir / "master.key").read_text().strip()
    assert master_hex not in (root / "keys.json").read_text()
    with duckdb.connect(str(home.store_path)) as con:
        assert con.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchall()


def test_init_refuses_to_overwrite_an_existing_home(tmp_path):
    init_home(tmp_path / "h")
    with pytest.raises(HomeError, match="already a joinedup home"):
        init_home(tmp_path / "h")
    result = CliRunner().invoke(cli, ["init", "--home", str(tmp_path / "h")])
    assert result.exit_code != 0 and "already a joinedup home" in result.output


def test_keys_differ_by_project_and_purpose():
    master = bytes(range(32))
    a, b = KeyRing(master, "project-a"), KeyRing(master, "project-b")
    assert a.token_key("nhs_number") == KeyRing(master, "project-a").token_key("nhs_number")
    assert a.token_key("nhs_number") != b.token_key("nhs_number")
    assert a.token_key("nhs_number") != a.token_key("nino")
    assert a.key_ids() != b.key_ids()


def test_malformed_master_secret_is_a_clear_error(tmp_path):
    bad = tmp_path / "master.key"
    bad.write_text("not hex")
    with pytest.raises(SecretError, match="not hex"):
        read_master_secret(bad)
    bad.write_text("ab" * 5)
    with pytest.raises(SecretError, match="32 bytes"):
        read_master_secret(bad)


def test_load_home_rejects_invalid_settings(tmp_path):
    with pytest.raises(HomeError, match="not a joinedup home"):
        load_home(tmp_path / "missing")
    home = init_home(tmp_path / "h")
    (home.root / "joinedup.toml").write_text('schema_version = 99\nproject_id = "x"\n')
    with pytest.raises(HomeError, match="schema_version must be 1"):
        load_home(home.root)
