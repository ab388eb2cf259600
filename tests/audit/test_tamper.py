"""verify_ledger catches each kind of tampering and names the first bad entry."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest

from audit import Ledger
from audit.records import decode_record, encode_record
from audit.verifier import canonical_json
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event

N = 40
EVERY = 10


@pytest.fixture
def filled(ledger_dir: Path, signing_key: Path) -> tuple[Path, bytes]:
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append_many([sample_event(i) for i in range(N)])
        pem = led.public_key_path.read_bytes()
    return ledger_dir, pem


def lines_of(ledger_dir: Path) -> list[bytes]:
    return (ledger_dir / "log.jsonl").read_bytes().splitlines(keepends=True)


def write_lines(ledger_dir: Path, lines: list[bytes]) -> None:
    (ledger_dir / "log.jsonl").write_bytes(b"".join(lines))


def verify(ledger_dir: Path, pem: bytes, **kw):
    return verify_ledger(ledger_dir, pem, checkpoint_every=EVERY, **kw)


def test_untouched_ledger_verifies(filled):
    result = verify(*filled)
    assert result.ok and result.entries == N and result.first_bad is None
    assert result.checkpoints_checked == N // EVERY


def test_modified_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    lines[17] = lines[17].replace(b'"purpose":"employment_support"', b'"purpose":"marketing"')
    # Keep the CRC valid so only the leaf hash can give it away.
    body = lines[17].rpartition(b"\t")[0]
    lines[17] = body + b"\t" + b"%08x" % zlib.crc32(body) + b"\n"
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert result.first_bad == 17
    assert result.to_dict()["first_bad_entry"].startswith("ev-000000000017-")
    assert any("modified" in p for p in result.problems)


def test_modified_entry_with_rewritten_leaf_hash_is_caught_by_checkpoints(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    record = decode_record(lines[23])
    forged = {**record.event, "purpose": "marketing"}
    lines[23] = encode_record(23, forged)[0]  # a fully consistent record, leaf and all
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert result.first_bad == 20  # the last good checkpoint covers 0..19
    assert any("root does not match" in p for p in result.problems)


def test_deleted_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    del lines[8]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 8
    assert any("deleted" in p for p in result.problems)


def test_inserted_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    fake = {**sample_event(999), "event_id": "ev-0000000012"}
    lines.insert(12, encode_record(12, fake)[0])
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 12
    assert any("inserted" in p for p in result.problems)


def test_reordered_entries_are_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    lines[30], lines[31] = lines[31], lines[30]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 30


def test_truncated_log_is_caught(filled):
    ledger_dir, pem = filled
    write_lines(ledger_dir, lines_of(ledger_dir)[:35])
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 35
    assert any("truncated" in p for p in result.problems)


def test_truncation_that_also_drops_checkpoints_is_caught_by_a_trusted_checkpoint(filled):
    ledger_dir, pem = filled
    trusted = json.loads((ledger_dir / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    write_lines(ledger_dir, lines_of(ledger_dir)[:25])
    cps = (ledger_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (ledger_dir / "checkpoints.jsonl").write_bytes(b"".join(cps[:2]))
    # Cut back to a consistent point, the directory alone cannot show it (documented)...
    assert verify(ledger_dir, pem).ok
    # ...which is why the board keeps checkpoints: its copy of the latest one names the cut.
    result = verify(ledger_dir, pem, trusted_checkpoints=[trusted])
    assert not result.ok and result.first_bad == 25
    assert any("trusted checkpoint #1 covers 40 entries" in p for p in result.problems)


def test_forged_checkpoint_is_caught(filled):
    ledger_dir, pem = filled
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    cps[1]["root_hash"] = "00" * 32  # claims a different tree, keeps the old signature
    path.write_bytes(b"".join(canonical_json(c) + b"\n" for c in cps))
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert any("checkpoint #2: forged" in p for p in result.problems)


def test_checkpoint_signed_by_another_key_is_caught(filled, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ledger_dir, pem = filled
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    body = {k: v for k, v in cps[0].items() if k != "signature"}
    cps[0]["signature"] = base64.b64encode(
        Ed25519PrivateKey.generate().sign(canonical_json(body))
    ).decode()
    path.write_bytes(b"".join(canonical_json(c) + b"\n" for c in cps))
    result = verify(ledger_dir, pem)
    assert not result.ok and any("checkpoint #1: forged" in p for p in result.problems)


def test_wrong_public_key_fails_every_checkpoint(filled, tmp_path):
    from tests.audit.helpers import write_signing_key

    ledger_dir, _ = filled
    with Ledger(tmp_path / "other", write_signing_key(tmp_path / "other.key")) as other:
        other_pem = other.public_key_path.read_bytes()
    result = verify(ledger_dir, other_pem)
    assert not result.ok
    assert sum("forged" in p for p in result.problems) == N // EVERY


def test_deleted_checkpoints_file_is_caught(filled):
    ledger_dir, pem = filled
    (ledger_dir / "checkpoints.jsonl").unlink()
    result = verify(ledger_dir, pem)
    assert not result.ok and any("checkpoints missing" in p for p in result.problems)


def test_verify_flags_a_stored_event_that_carries_a_raw_identifier(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    record = decode_record(lines[3])
    lines[3] = encode_record(3, {**record.event, "note": "AB123456C"})[0]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert any("privacy" in n and "National Insurance" in n for n in result.notices)
