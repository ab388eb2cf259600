"""The `joinedup audit ...` commands on a real home, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit import Ledger
from audit.records import decode_record, encode_record
from audit.verifier import load_public_key, verify_consistency_proof, verify_inclusion_proof
from joinedup.cli import cli
from joinedup.home import init_home
from tests.audit.helpers import id_at, sample_event

IDENTITY = {"given_name": "Alice", "family_name": "Smith", "date_of_birth": "1980-02-03"}


@pytest.fixture
def home(tmp_path: Path):
    h = init_home(tmp_path / "home", project_id="audit-test")
    with Ledger(h.ledger_dir, h.signing_key_path("audit")) as led:
        led.append_many([sample_event(i) for i in range(25)])
    return h


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_verify_ok_then_deleted_entry_is_named(home):
    result = run("audit", "verify", "--home", str(home.root))
    assert result.exit_code == 0, result.output
    assert "ledger OK: 25 entries" in result.output

    log = home.ledger_dir / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:11] + lines[12:]))
    result = run("audit", "verify", "--home", str(home.root), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["ok"] is False and doc["first_bad_index"] == 11
    assert doc["first_bad_entry"] == "entry #11"


def test_checkpoint_prove_consistency_and_standalone_verification(home, tmp_path):
    first = tmp_path / "cp1.json"
    assert run("audit", "checkpoint", "--home", str(home.root), "--out", str(first)).exit_code == 0
    with Ledger(home.ledger_dir, home.signing_key_path("audit")) as led:
        led.append_many([sample_event(i) for i in range(25, 40)])
        third = id_at(led, 3)
    bundle_path = tmp_path / "proof.json"
    result = run("audit", "prove", third, "--home", str(home.root), "--out", str(bundle_path))
    assert result.exit_code == 0, result.output
    bundle = json.loads(bundle_path.read_text())
    key = load_public_key((home.ledger_dir / "audit-public.pem").read_bytes())
    verify_inclusion_proof(bundle["proof"], bundle["checkpoint"], key)
    assert bundle["checkpoint"]["tree_size"] == 40
    assert bundle["proof"]["event"]["person_key"] == sample_event(3)["person_key"]

    result = run("audit", "consistency", str(first), "40", "--home", str(home.root))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    verify_consistency_proof(doc["proof"], doc["old_checkpoint"], doc["new_checkpoint"], key)

    assert run("audit", "verify", "--home", str(home.root), "--checkpoint", str(first)).exit_code == 0
    result = run("audit", "prove", "ev-000000000999-aaaaaaaa", "--home", str(home.root))
    assert result.exit_code != 0 and "no event ev-000000000999-aaaaaaaa" in result.output


def test_verify_fails_on_tampering_after_a_checkpoint(home, tmp_path):
    cp = tmp_path / "cp.json"
    run("audit", "checkpoint", "--home", str(home.root), "--out", str(cp))
    log = home.ledger_dir / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[7] = encode_record(7, {**decode_record(lines[7]).event, "purpose": "marketing"})[0]
    log.write_bytes(b"".join(lines))
    result = run("audit", "verify", "--home", str(home.root))
    assert result.exit_code == 1
    with Ledger(home.ledger_dir) as led:
        first = id_at(led, 0)
    assert f"first bad entry: {first}" in result.output  # only one checkpoint: range 0..24

    lines[7] = lines[7].replace(b"marketing", b"employment_support")  # leaf now wrong: exact
    log.write_bytes(b"".join(lines))
    result = run("audit", "verify", "--home", str(home.root))
    assert result.exit_code == 1 and "first bad entry: entry #7" in result.output


def test_report_writes_json_and_offline_html(home, tmp_path):
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    result = run("audit", "report", "--home", str(home.root), "--from", "2026-11-01",
                 "--to", "2026-11-30", "--json", str(out_json), "--html", str(out_html))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert report["accesses"]["total"] == 25
    html = out_html.read_text()
    assert "<svg" in html and "http" not in html and "<script" not in html
    result = run("audit", "report", "--home", str(home.root), "--from", "2026-12-01", "--to", "2026-11-01")
    assert result.exit_code != 0 and "period is empty" in result.output


def test_subject_access_pseudonymises_identifiers(home, tmp_path):
    from connectors.pseudonymise import person_key

    key = person_key(home.keyring(), IDENTITY)
    with Ledger(home.ledger_dir, home.signing_key_path("audit")) as led:
        disclosed = led.append({**sample_event(100), "person_key": key})
        led.append({**sample_event(101, "consent.granted"), "person_key": key})
    ids = tmp_path / "me.json"
    ids.write_text(json.dumps(IDENTITY))
    result = run("audit", "subject", "--home", str(home.root), "--identifiers", str(ids))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["person_key"] == key
    assert [e["event_id"] for e in doc["disclosures"]] == [disclosed]
    assert [e["type"] for e in doc["other_events"]] == ["consent.granted"]
    # The identifiers themselves, not fragments a hex hash may contain by chance.
    assert "Alice" not in result.output and IDENTITY["date_of_birth"] not in result.output
    assert b"Alice" not in (home.ledger_dir / "log.jsonl").read_bytes()
