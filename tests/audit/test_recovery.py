"""Recovery after a crash: a torn tail is quarantined, nothing valid is discarded, damage and
cuts are refused rather than written over, and an event id is never issued twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import Ledger, LedgerError
from audit.ledger import index_of
from audit.records import decode_record
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event


def log_lines(ledger_dir: Path) -> list[bytes]:
    return (ledger_dir / "log.jsonl").read_bytes().splitlines(keepends=True)


def unsigned(ledger_dir: Path) -> Ledger:
    """A writer without the key signs no checkpoint: what was appended is then uncovered,
    as the tail of a ledger is between two checkpoints."""
    return Ledger(ledger_dir)


def test_an_earlier_corrupted_line_is_damage_not_a_torn_tail(ledger_dir, signing_key):
    with unsigned(ledger_dir) as led:
        led.append_many([sample_event(i) for i in range(6)])
    lines = log_lines(ledger_dir)
    lines[2] = lines[2][:40] + lines[2][60:]  # shorter: every offset after it moves
    damaged = b"".join(lines)
    (ledger_dir / "log.jsonl").write_bytes(damaged)
    with pytest.raises(LedgerError, match="damage, not a torn write"):
        Ledger(ledger_dir, signing_key).append(sample_event(99))
    # Nothing was discarded or moved: the valid last entry is still there.
    assert (ledger_dir / "log.jsonl").read_bytes() == damaged
    assert not (ledger_dir / "torn").exists()
    assert decode_record(log_lines(ledger_dir)[-1]).index == 5


def test_a_torn_tail_keeps_every_complete_record_before_it(ledger_dir, signing_key):
    with unsigned(ledger_dir) as led:
        led.append_many([sample_event(i) for i in range(4)])
        kept = [e["event_id"] for e in led.events()]
        # A crash mid-batch: the first record of the batch made it whole, the second did not.
        led.append_many([sample_event(4), sample_event(5)])
        all_ids = [e["event_id"] for e in led.events()]
    data = (ledger_dir / "log.jsonl").read_bytes()
    (ledger_dir / "log.jsonl").write_bytes(data[:-30])
    with Ledger(ledger_dir, signing_key) as led:
        new_id = led.append(sample_event(6))
        ids = [e["event_id"] for e in led.events()]
        reports = led.torn_tail_reports()
    assert ids[:5] == kept + [all_ids[4]]  # the complete record of the torn batch is kept
    assert index_of(new_id) == 5 and new_id != all_ids[5]  # same position, never the same id
    assert len(reports) == 1 and reports[0]["entries_before"] == 5
    assert (ledger_dir / reports[0]["quarantined_to"]).read_bytes() == data[len(b"".join(log_lines(ledger_dir)[:5])):-30]


def test_a_lost_uncovered_tail_never_gives_its_ids_again(ledger_dir, signing_key):
    with unsigned(ledger_dir) as led:
        first = led.append_many([sample_event(i) for i in range(10)])
    lines = log_lines(ledger_dir)
    (ledger_dir / "log.jsonl").write_bytes(b"".join(lines[:7]))  # 3 uncovered entries gone
    with Ledger(ledger_dir, signing_key) as led:
        again = led.append_many([sample_event(i) for i in range(7, 10)])
    assert [index_of(i) for i in again] == [7, 8, 9]
    assert not set(again) & set(first)


def test_a_tail_covered_by_a_checkpoint_is_never_treated_as_torn(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=0) as led:
        led.append_many([sample_event(i) for i in range(5)])  # close signs size 5
    lines = log_lines(ledger_dir)
    lines[-1] = lines[-1][:50] + b"X" + lines[-1][51:]  # the last line garbled, length kept
    (ledger_dir / "log.jsonl").write_bytes(b"".join(lines))
    (ledger_dir / "offsets.bin").write_bytes(b"")  # as after a crash that lost the cache
    with pytest.raises(LedgerError, match="acknowledged"):
        Ledger(ledger_dir, signing_key)
    assert log_lines(ledger_dir) == lines


@pytest.mark.parametrize("where", ["ledger", "witness"])
def test_a_cut_log_is_refused_for_writing(ledger_dir, signing_key, tmp_path, where):
    witness = tmp_path / "board"
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, witness=witness) as led:
        led.append_many([sample_event(i) for i in range(20)])
    lines = log_lines(ledger_dir)
    (ledger_dir / "log.jsonl").write_bytes(b"".join(lines[:-3]))
    if where == "witness":  # the ledger's own checkpoints removed too: the witness still knows
        (ledger_dir / "checkpoints.jsonl").unlink()
    with pytest.raises(LedgerError, match="covers 20: entries were removed"):
        Ledger(ledger_dir, signing_key, witness=witness)
    assert log_lines(ledger_dir) == lines[:-3]


def test_a_log_cut_while_open_is_refused(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, checkpoint_seconds=0) as led:
        led.append_many([sample_event(i) for i in range(5)])
        lines = log_lines(ledger_dir)
        (ledger_dir / "log.jsonl").write_bytes(b"".join(lines[:-1]))
        with pytest.raises(LedgerError, match="shrank"):
            led.append(sample_event(5))
        (ledger_dir / "log.jsonl").write_bytes(b"".join(lines))  # put back, to close cleanly


def test_a_torn_checkpoint_line_does_not_hide_the_next_one(ledger_dir, signing_key, tmp_path):
    witness = tmp_path / "board"
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, witness=witness) as led:
        led.append_many([sample_event(i) for i in range(3)])
        pem = led.public_key_path.read_bytes()
    for path in (ledger_dir / "checkpoints.jsonl", witness / "checkpoints.jsonl"):
        with open(path, "ab") as fh:
            fh.write(b'{"key_id":"ab12","root_hash":"00')  # a crash mid-write
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, witness=witness) as led:
        led.append(sample_event(3))
    result = verify_ledger(ledger_dir, pem, witness=witness)
    assert result.ok, result.problems
    assert result.checkpoints_checked == 4  # sizes 3 and 4, here and at the witness
    assert any("unreadable; a torn write?" in n for n in result.notices)


def test_a_checkpoint_missed_by_a_crash_is_signed_when_the_ledger_is_next_opened(ledger_dir, signing_key):
    with unsigned(ledger_dir) as led:  # as if killed right after the append that reached 5
        led.append_many([sample_event(i) for i in range(7)])
    with Ledger(ledger_dir, signing_key, checkpoint_every=5, checkpoint_seconds=0) as led:
        assert [c["tree_size"] for c in led.checkpoints()] == [5]
        pem = led.public_key_path.read_bytes()
    assert [c["tree_size"] for c in led.checkpoints()] == [5, 7]
    assert verify_ledger(ledger_dir, pem, checkpoint_every=5).ok
    # One interval short is what such a crash leaves (a notice); more is a cut file.
    (ledger_dir / "checkpoints.jsonl").unlink()
    result = verify_ledger(ledger_dir, pem, checkpoint_every=5)
    assert result.ok and any("no checkpoint of size 5 yet" in n for n in result.notices)
    result = verify_ledger(ledger_dir, pem, checkpoint_every=3)
    assert not result.ok and any("checkpoints missing" in p for p in result.problems)
