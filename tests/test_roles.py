"""`joinedup init --role`: each party's home holds only its row of the key table, and a
linkage-unit home with no key material ingests and links extracts end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from connectors.keys import ENCODING_PURPOSES, SERVICE_PURPOSES, SecretError
from joinedup.cli import cli
from joinedup.home import HomeError, init_home, load_home

INPUTS = {"dwp": "dwp_claimants.csv", "nhs": "nhs", "housing": "housing_tenancies.csv"}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    root = tmp_path_factory.mktemp("roles")
    _invoke("init", "--home", str(root / "custodian"), "--role", "connector", "--project-id", "p-roles")
    _invoke("init", "--home", str(root / "dwp"), "--role", "connector", "--keys-from", str(root / "custodian"))
    _invoke("init", "--home", str(root / "lu"), "--role", "linkage",
            "--keys-from", str(root / "custodian" / "keys.json"))
    _invoke("init", "--home", str(root / "service"), "--role", "service", "--keys-from", str(root / "custodian"))
    from connectors.synth import write_synthetic_sources

    write_synthetic_sources(root / "src", 400, 5)
    extracts = []
    for kind, name in INPUTS.items():
        out = root / "out" / kind
        _invoke("extract", "--home", str(root / "dwp"), "--kind", kind, "--source-name", f"{kind}-x",
                "--input", str(root / "src" / name), "--out", str(out))
        extracts.append(out)
    return root, extracts


def test_linkage_unit_home_has_no_key_material(parties):
    root, _ = parties
    lu = load_home(root / "lu")
    assert lu.role == "linkage" and lu.project_id == "p-roles"
    assert not (lu.secrets_dir / "master.key").exists()
    assert not (lu.secrets_dir / "service-keys.json").exists()
    with pytest.raises(SecretError, match="holds no keys"):
        lu.keyring()
    # The public key ids are the project's, so extracts can be checked without a key.
    assert lu.public_key_ids() == load_home(root / "custodian").keyring().key_ids()


def test_linkage_unit_ingests_and_links_without_keys(parties):
    root, extracts = parties
    lu = root / "lu"
    out = _invoke("ingest", "--home", str(lu), *map(str, extracts))
    assert out.count("ingested") == len(extracts)
    # Content never reaches the linkage unit's home.
    kept = sorted(p.name for p in (lu / "extracts").rglob("*") if p.is_file())
    assert "content.parquet" not in kept and kept.count("linkage.parquet") == len(extracts)
    out = _invoke("link", "--home", str(lu), "--out", "run1")
    assert "linked" in out
    entities = pq.read_table(lu / "runs" / "run1" / "entities.parquet")
    n_records = sum(json.loads((e / "manifest.json").read_text())["counts"]["accepted"] for e in extracts)
    assert entities.num_rows == n_records
    assert len(set(entities.column("entity_id").to_pylist())) < n_records  # records were linked
    # Still no key anywhere in the home: neither the master secret nor any derived key.
    custodian = load_home(root / "custodian")
    master = (custodian.secrets_dir / "master.key").read_text().strip()
    ring = custodian.keyring()
    everything = _all_bytes(lu)
    assert master.encode() not in everything
    for purpose in (*SERVICE_PURPOSES, "ref", "blocking"):
        key = ring.key(purpose)
        assert key not in everything and key.hex().encode() not in everything, purpose
    secrets = sorted(p.name for p in (lu / "secrets").iterdir())
    assert set(secrets) <= {"audit-signing.key"}  # its own ledger's signing key, nothing shared


def test_linkage_unit_refuses_an_extract_of_another_project(parties, tmp_path):
    root, _extracts = parties
    other = tmp_path / "other"
    _invoke("init", "--home", str(other), "--role", "connector", "--project-id", "p-other")
    out = tmp_path / "x"
    _invoke("extract", "--home", str(other), "--kind", "dwp", "--source-name", "dwp-y",
            "--input", str(root / "src" / INPUTS["dwp"]), "--out", str(out))
    result = CliRunner().invoke(cli, ["ingest", "--home", str(root / "lu"), str(out)])
    assert result.exit_code != 0 and "belongs to linkage project 'p-other'" in result.output


def test_service_home_holds_only_its_derived_keys(parties):
    root, _ = parties
    service = load_home(root / "service")
    custodian = load_home(root / "custodian").keyring()
    assert not (service.secrets_dir / "master.key").exists()
    ring = service.keyring()
    for purpose in ("content", "person", "audit-hash", *ENCODING_PURPOSES):
        assert ring.key(purpose) == custodian.key(purpose)
    with pytest.raises(SecretError, match="'ref'"):
        ring.key("ref")  # refs cannot be inverted by the service


def test_role_homes_need_their_key_source(tmp_path):
    with pytest.raises(HomeError, match="needs --keys-from"):
        init_home(tmp_path / "lu", role="linkage")
    with pytest.raises(HomeError, match="role must be one of"):
        init_home(tmp_path / "x", role="auditor")
    with pytest.raises(HomeError, match="needs --keys-from"):
        init_home(tmp_path / "svc", role="service")
