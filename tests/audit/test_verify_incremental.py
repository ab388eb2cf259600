"""LedgerVerifier (the service's `audit.verify`): asked again after the ledger changed, it
answers exactly as a fresh `verify_ledger` does, while re-checking only the new entries when
the old ones are untouched. Tampering with an entry it has already verified is still caught
by the very next call."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from audit import Ledger, LedgerVerifier
from audit.records import decode_record
from audit.verifier import canonical_json
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event
from tests.audit.test_tamper import (
    WITNESSED_ENTRIES,
    _delete,
    _delete_checkpoints_file,
    _forge_checkpoint,
    _insert,
    _modify,
    _reorder,
    _truncate,
    lines_of,
    write_lines,
)

EVERY = 10


def both(ledger_dir: Path, pem: bytes, verifier: LedgerVerifier, **kw) -> tuple[dict, dict]:
    """(the verifier's answer, a fresh verify_ledger's), as dicts."""
    cached = verifier.verify().to_dict()
    fresh = verify_ledger(ledger_dir, pem, checkpoint_every=verifier.checkpoint_every,
                          witness=kw.get("witness")).to_dict()
    return cached, fresh


@pytest.fixture
def warm(ledger_dir: Path, signing_key: Path):
    """A ledger of 40 entries and a verifier that has verified it once."""
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append_many([sample_event(i) for i in range(40)])
        pem = led.public_key_path.read_bytes()
    verifier = LedgerVerifier(ledger_dir, pem, checkpoint_every=EVERY)
    first = verifier.verify()
    assert first.ok and first.entries == 40 and verifier.resumed_from == 0
    return ledger_dir, pem, verifier


def test_new_entries_are_checked_from_where_the_last_call_stopped(warm, signing_key):
    ledger_dir, pem, verifier = warm
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append_many([sample_event(i) for i in range(40, 65)])
    cached, fresh = both(ledger_dir, pem, verifier)
    assert verifier.resumed_from == 40  # the 40 verified entries were not parsed again
    assert cached == fresh and cached["ok"] and cached["entries"] == 65
    again, _ = both(ledger_dir, pem, verifier)
    assert verifier.resumed_from == 65 and again == fresh


@pytest.mark.parametrize("where", [3, 25, 39])
def test_an_old_entry_modified_after_a_verify_fails_the_next_verify(warm, where):
    ledger_dir, pem, verifier = warm
    lines = lines_of(ledger_dir)
    record = decode_record(lines[where])
    # Only the event changes (leaf and CRC left as they were): the leaf gives it away.
    event = {**record.event, "purpose": "marketing"}
    body = canonical_json({"event": event, "index": where, "leaf": record.leaf.hex()})
    lines[where] = body + b"\t" + b"%08x" % zlib.crc32(body) + b"\n"
    write_lines(ledger_dir, lines)
    cached, fresh = both(ledger_dir, pem, verifier)
    assert not cached["ok"] and cached["first_bad_index"] == where
    assert verifier.resumed_from == 0  # the changed prefix was checked again in full
    assert cached == fresh


def test_a_same_length_edit_of_one_byte_is_caught(warm):
    ledger_dir, pem, verifier = warm
    data = bytearray((ledger_dir / "log.jsonl").read_bytes())
    at = data.index(b"employment_support")
    data[at] = ord("E")  # same size, same line count: only the bytes differ
    (ledger_dir / "log.jsonl").write_bytes(bytes(data))
    cached, fresh = both(ledger_dir, pem, verifier)
    assert not cached["ok"] and cached == fresh


def test_a_repaired_log_verifies_again(warm):
    ledger_dir, pem, verifier = warm
    original = (ledger_dir / "log.jsonl").read_bytes()
    _delete_line(ledger_dir, 12)
    assert not verifier.verify().ok
    (ledger_dir / "log.jsonl").write_bytes(original)
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached["ok"] and cached == fresh


def _delete_line(ledger_dir: Path, index: int) -> None:
    lines = lines_of(ledger_dir)
    del lines[index]
    write_lines(ledger_dir, lines)


def test_a_checkpoint_signed_later_for_an_earlier_size_is_checked(warm, signing_key):
    """A checkpoint may arrive for a size the verifier has already passed (another process
    signs the one due at a multiple of the interval just after this one read the log)."""
    ledger_dir, pem, verifier = warm
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    forged = {**cps[1], "root_hash": cps[2]["root_hash"]}  # a real signature, a wrong body
    with open(path, "ab") as fh:
        fh.write(canonical_json(forged) + b"\n")
    cached, fresh = both(ledger_dir, pem, verifier)
    assert not cached["ok"] and cached == fresh
    assert any("forged" in p for p in cached["problems"])


@pytest.mark.parametrize("root_ok", [True, False])
def test_a_validly_signed_checkpoint_for_an_earlier_size_is_checked_against_its_root(
        warm, signing_key, root_ok):
    import base64

    from audit.ledger import load_private_key

    ledger_dir, pem, verifier = warm
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    body = {k: v for k, v in cps[1].items() if k != "signature"}
    if not root_ok:
        body["root_hash"] = cps[2]["root_hash"]  # signed by the key, but not this log's root
    signature = load_private_key(signing_key).sign(canonical_json(body))
    with open(path, "ab") as fh:
        fh.write(canonical_json({**body, "signature": base64.b64encode(signature).decode()})
                 + b"\n")
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached == fresh and not cached["ok"]  # out of order: smaller than an earlier one
    assert any("smaller than an earlier" in p for p in cached["problems"])
    assert any("root does not match" in p for p in cached["problems"]) is not root_ok


def test_a_torn_tail_then_its_completion(warm, signing_key):
    ledger_dir, pem, verifier = warm
    complete = (ledger_dir / "log.jsonl").read_bytes()
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append(sample_event(40))
    full = (ledger_dir / "log.jsonl").read_bytes()
    (ledger_dir / "log.jsonl").write_bytes(full[:-40])  # a write caught half way
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached == fresh and cached["torn_tail"] is not None
    (ledger_dir / "log.jsonl").write_bytes(full)  # ...and finished
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached == fresh and cached["ok"] and cached["entries"] == 41
    assert len(complete) < len(full)
    # The last line without its LF still decodes: a fresh verify counts it, and so does
    # the verifier, without keeping it.
    (ledger_dir / "log.jsonl").write_bytes(full[:-1])
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached == fresh
    (ledger_dir / "log.jsonl").write_bytes(full)
    cached, fresh = both(ledger_dir, pem, verifier)
    assert cached == fresh and cached["ok"]


@pytest.mark.parametrize(
    "tamper",
    [_modify, _delete, _insert, _reorder, _truncate(1), _truncate(500), _forge_checkpoint,
     _delete_checkpoints_file],
    ids=["modify", "delete", "insert", "reorder", "truncate-1", "truncate-500",
         "forged-checkpoint", "deleted-checkpoints-file"],
)
def test_each_tampering_after_a_verify_is_caught_as_a_fresh_verify_catches_it(tmp_path,
                                                                               signing_key, tamper):
    ledger_dir, witness = tmp_path / "ledger", tmp_path / "board-witness"
    with Ledger(ledger_dir, signing_key, witness=witness) as led:
        for lo in range(0, WITNESSED_ENTRIES, 50):
            led.append_many([sample_event(i) for i in range(lo, min(WITNESSED_ENTRIES, lo + 50))])
        pem = led.public_key_path.read_bytes()
    verifier = LedgerVerifier(ledger_dir, pem, witness=witness)
    assert verifier.verify().ok
    tamper(ledger_dir)
    cached, fresh = both(ledger_dir, pem, verifier, witness=witness)
    assert not cached["ok"]
    assert cached == fresh


def test_concurrent_calls_share_runs_and_each_gets_a_fresh_answer(warm, signing_key):
    """Callers that arrive while a verify runs share the next run; each answer is one a
    fresh verify gives (the ledger does not change here), and callers may change theirs."""
    from concurrent.futures import ThreadPoolExecutor

    ledger_dir, pem, verifier = warm
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append_many([sample_event(i) for i in range(40, 90)])
    fresh = verify_ledger(ledger_dir, pem, checkpoint_every=EVERY).to_dict()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: verifier.verify(), range(32)))
    assert all(r.to_dict() == fresh for r in results)
    results[0].problems.append("changed by a caller")
    assert verifier.verify().to_dict() == fresh
