"""ConsentStore on a real DuckDB file, signed receipts, the catalogue, and the consent CLI."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import CatalogueError, ConsentError, ConsentStore, load_catalogue, verify_receipt
from consent.receipts import load_signing_key, public_key_bytes
from policies import PolicyEngine

PERSON = "ab" * 32
PURPOSE = "employment_support"


@pytest.fixture()
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "consent-signing.key"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


@pytest.fixture()
def store(tmp_path: Path, key_path: Path):
    with ConsentStore(tmp_path / "store.duckdb", key_path) as s:
        yield s


def grant(store, **kw):
    args = dict(person_key=PERSON, purposes=[PURPOSE], categories=["dwp", "nhs", "MH", "HOU"],
                recorded_by="u1", collection_method="in_person_signed",
                given_at="2026-01-01T09:00:00Z", expires_at="2027-01-01T09:00:00Z")
    args.update(kw)
    return store.grant(**args)


def test_current_follows_grant_expiry_and_withdrawal(store):
    assert store.current(PERSON, PURPOSE, "2026-06-01T00:00:00Z")["status"] == "none"
    record = grant(store)
    assert record.special_categories == ["MH", "nhs"]
    now = store.current(PERSON, PURPOSE, "2026-06-01T00:00:00Z")
    assert now["status"] == "active" and now["receipt_id"] == record.receipt_id
    assert sorted(now["categories"]) == ["HOU", "MH", "dwp", "nhs"]
    assert store.current(PERSON, "service_planning", "2026-06-01T00:00:00Z")["status"] == "none"
    assert store.current(PERSON, PURPOSE, "2027-01-01T09:00:00Z")["status"] == "expired"
    store.withdraw(record.receipt_id, by="u2", at="2026-07-01T00:00:00Z")
    assert store.current(PERSON, PURPOSE, "2026-07-01T00:00:00Z")["status"] == "withdrawn"
    assert store.current(PERSON, PURPOSE, "2026-06-30T23:59:59Z")["status"] == "active"  # history kept
    with pytest.raises(ConsentError, match="already withdrawn"):
        store.withdraw(record.receipt_id, by="u2")


def test_withdrawal_takes_effect_at_once(store):
    record = grant(store, given_at=None, expires_at=None)
    assert store.current(PERSON, PURPOSE)["status"] == "active"
    store.withdraw(record.receipt_id, by="u1")
    assert store.current(PERSON, PURPOSE)["status"] == "withdrawn"
    assert store.current(PERSON, PURPOSE)["categories"] == []


def test_current_sees_writes_of_another_store_and_after_reopen(store, tmp_path, key_path):
    """current() answers from memory; a write through another ConsentStore on the same file
    (same process), or made while the file was released, is still seen at once."""
    record = grant(store, given_at=None, expires_at=None)
    assert store.current(PERSON, PURPOSE)["status"] == "active"  # index loaded
    with ConsentStore(tmp_path / "store.duckdb", key_path) as other:
        assert other.current(PERSON, PURPOSE)["status"] == "active"
        other.withdraw(record.receipt_id, by="u2")
    assert store.current(PERSON, PURPOSE)["status"] == "withdrawn"
    second = grant(store, given_at=None, expires_at=None)
    store.close()  # release the file: another process could write now
    with duckdb.connect(str(tmp_path / "store.duckdb")) as con:  # an outside writer
        con.execute("UPDATE consent_events SET person_key = ? WHERE receipt_id = ?",
                    ["cd" * 32, second.receipt_id])
    assert store.current(PERSON, PURPOSE)["status"] == "withdrawn"
    assert store.current("cd" * 32, PURPOSE)["receipt_id"] == second.receipt_id


def test_history_is_append_only(store, tmp_path: Path):
    record = grant(store)
    store.withdraw(record.receipt_id, by="u2", at="2026-03-01T00:00:00Z")
    events = store.history(PERSON)
    assert [e["event"] for e in events] == ["granted", "withdrawn"]
    assert events[0]["record"]["withdrawn_at"] is None  # the grant row was not rewritten
    assert events[1]["record"]["withdrawn_at"] == "2026-03-01T00:00:00Z"
    store.close()
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    assert con.execute("SELECT count(*) FROM consent_events").fetchall()[0][0] == 2
    con.close()


def test_store_accepts_only_pseudonymous_keys_and_catalogue_values(store):
    with pytest.raises(ConsentError, match="pseudonymous"):
        grant(store, person_key="Ann Smith 1980-02-03")
    with pytest.raises(ConsentError, match="purposes: not in the consent catalogue: marketing"):
        grant(store, purposes=["marketing"])
    with pytest.raises(ConsentError, match="categories: not in the consent catalogue: XYZ"):
        grant(store, categories=["XYZ"])
    with pytest.raises(ConsentError, match="collection method"):
        grant(store, collection_method="assumed")
    with pytest.raises(ConsentError, match="must be after"):
        grant(store, expires_at="2025-01-01T00:00:00Z")


def test_signed_receipt_verifies_and_detects_tampering(store, key_path: Path):
    record = grant(store)
    signed = store.receipt(record.receipt_id)
    body = signed["receipt"]
    assert body["consentReceiptID"] == record.receipt_id and body["piiPrincipalId"] == PERSON
    assert body["sensitive"] is True and "Mental health" in body["spiCat"]
    published = public_key_bytes(load_signing_key(key_path))
    assert verify_receipt(signed, published)
    assert not verify_receipt(signed, public_key_bytes(Ed25519PrivateKey.generate()))
    tampered = json.loads(json.dumps(signed))
    tampered["receipt"]["services"][0]["purposes"][0]["piiCategory"].append("SUB")
    assert not verify_receipt(tampered)
    assert not verify_receipt({"receipt": body})


def test_current_feeds_the_policy(store):
    engine = PolicyEngine.embedded()
    record = grant(store, categories=["dwp", "MH"])
    request = {"subject": {"id": "u1", "role": "adviser", "organisation": "csc-margate"},
               "action": "summary.request", "purpose": PURPOSE, "time": "2026-06-01T00:00:00Z",
               "resource": {"person_key": PERSON, "categories": ["MH", "SUB"]}}
    d = engine.decide(dict(request, consent=store.current(PERSON, PURPOSE, request["time"])))
    assert d.allow and d.obligations["categories"] == ["MH"] and d.obligations["sources"] == ["dwp"]
    store.withdraw(record.receipt_id, by="u1", at="2026-05-01T00:00:00Z")
    d = engine.decide(dict(request, consent=store.current(PERSON, PURPOSE, request["time"])))
    assert not d.allow and d.reasons == ["This person has withdrawn their consent."]


def test_catalogue_validation(tmp_path: Path):
    cat = load_catalogue()
    assert "SUB" in cat.special_categories() and PURPOSE in cat.purposes
    bad = tmp_path / "c.toml"
    bad.write_text((Path(__file__).parents[2] / "joinedup/defaults/consent-catalogue.toml").read_text()
                   .replace('kind = "barrier"\ntitle = "Substance misuse"', 'kind = "drug"\ntitle = "Substance misuse"'))
    with pytest.raises(CatalogueError, match=r"categories.SUB.kind"):
        load_catalogue(bad)


def test_cli_grant_show_withdraw_history(tmp_path: Path):
    from joinedup.cli import cli

    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--home", str(home)]).exit_code == 0
    ident = tmp_path / "id.json"
    ident.write_text(json.dumps({"given_name": "Ann", "family_name": "Smith", "date_of_birth": "1980-02-03"}))
    receipt = tmp_path / "receipt.json"
    out = runner.invoke(cli, ["consent", "grant", "--home", str(home), "--identity", str(ident), "--as", "u1",
                              "--purpose", PURPOSE, "--category", "dwp", "--category", "MH",
                              "--receipt-out", str(receipt)])
    assert out.exit_code == 0, out.output
    granted = json.loads(out.output)
    assert verify_receipt(json.loads(receipt.read_text()))
    shown = json.loads(runner.invoke(cli, ["consent", "show", "--home", str(home), "--identity", str(ident),
                                           "--as", "u1", "--purpose", PURPOSE]).output)
    assert shown[PURPOSE]["status"] == "active" and shown[PURPOSE]["receipt_id"] == granted["receipt_id"]
    out = runner.invoke(cli, ["consent", "withdraw", "--home", str(home), "--identity", str(ident), "--as", "u1"])
    assert out.exit_code == 0, out.output
    shown = json.loads(runner.invoke(cli, ["consent", "show", "--home", str(home), "--identity", str(ident),
                                           "--as", "u1", "--purpose", PURPOSE]).output)
    assert shown[PURPOSE]["status"] == "withdrawn"
    history = runner.invoke(cli, ["consent", "history", "--home", str(home), "--identity", str(ident),
                                  "--as", "u1"]).output
    assert [e["event"] for e in json.loads(history)] == ["granted", "withdrawn"]
    # Identifiers are never stored: not in the store file, not in the ledger.
    for path in [home / "store.duckdb", *sorted((home / "ledger").rglob("*"))]:
        if path.is_file():
            raw = path.read_bytes()
            assert b"Smith" not in raw and b"1980-02-03" not in raw, path
    # A governance member may not record consent: refused in words, nothing written.
    out = runner.invoke(cli, ["consent", "grant", "--home", str(home), "--identity", str(ident), "--as", "g1",
                              "--role", "governance", "--org", "governance-board",
                              "--purpose", PURPOSE, "--category", "dwp"])
    assert out.exit_code != 0 and "refused" in out.output


def test_cli_policy_check_and_test(tmp_path: Path):
    from joinedup.cli import cli

    runner = CliRunner()
    request = {"subject": {"id": "g", "role": "governance", "organisation": "governance-board"},
               "action": "summary.request", "purpose": PURPOSE, "resource": {"person_key": PERSON},
               "time": "2026-06-01T00:00:00Z"}
    path = tmp_path / "in.json"
    path.write_text(json.dumps(request))
    out = runner.invoke(cli, ["policy", "check", "--input", str(path)])
    assert out.exit_code == 0, out.output
    decision = json.loads(out.output)
    assert decision["allow"] is False and decision["reasons"] and len(decision["bundle_revision"]) == 64
    path.write_text("[1, 2")
    out = runner.invoke(cli, ["policy", "check", "--input", str(path)])
    assert out.exit_code != 0 and "in.json" in out.output
    out = runner.invoke(cli, ["policy", "test"])
    assert out.exit_code == 0 and "tests passed" in out.output
