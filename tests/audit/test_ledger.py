"""Ledger.append: durability, validation, crash recovery, concurrency (threads, processes)."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from audit import EventRejected, Ledger, LedgerError
from audit.ledger import index_of
from audit.verifier import leaf_hash
from audit.verify import verify_ledger
from tests.audit.helpers import id_at, sample_event


def public_pem(ledger: Ledger) -> bytes:
    return ledger.public_key_path.read_bytes()


def test_append_returns_ids_in_order_and_events_survive_reopen(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key) as led:
        ids = [led.append(sample_event(i)) for i in range(5)]
        ids += led.append_many([sample_event(i) for i in range(5, 9)])
    assert [index_of(i) for i in ids] == list(range(9))
    assert len(set(ids)) == 9 and all(i.startswith(f"ev-{n:012d}-") for n, i in enumerate(ids))
    with Ledger(ledger_dir, signing_key) as again:
        assert len(again) == 9
        events = list(again.events())
        assert [e["event_id"] for e in events] == ids
        assert events[3]["person_key"] == sample_event(3)["person_key"]
        assert again.get(ids[4])["time"] == sample_event(4)["time"]
        assert index_of(again.append(sample_event(9))) == 9
        # The position alone does not name an event: the random part must match too.
        with pytest.raises(LedgerError, match="holds another event"):
            again.get(ids[4][:-8] + "aaaaaaaa")


def test_time_is_filled_in_when_missing(ledger):
    event = sample_event(1)
    del event["time"]
    event_id = ledger.append(event)
    assert ledger.get(event_id)["time"].endswith("Z")


@pytest.mark.parametrize(
    "field,value,path,reason",
    [
        ("nhs_number", "x", "nhs_number", "raw identifier"),
        ("Postcode", "CT9 1AB", "Postcode", "raw identifier"),
        ("dob", "1980-02-03", "dob", "raw identifier"),
        ("indicators", ["MH:3"], "indicators", "barrier content"),
        ("note", "called about AB123456C", "note", "National Insurance"),
        ("note", "NHS 943 476 5919", "note", "NHS number"),
        ("note", "lives at CT9 1AB", "note", "postcode"),
        ("purpose", "CT91AB", "purpose", "postcode"),
        ("categories", ["MH", "ct9 1ab"], "categories[1]", "postcode"),
        ("resource", {"name": "Alice"}, "resource.name", "raw identifier"),
        ("score", float("nan"), "score", "finite"),
    ],
)
def test_append_stores_identifier_like_values_redacted_never_raises(ledger, field, value, path, reason):
    event = sample_event(0)
    event[field] = value
    event_id = ledger.append(event)
    stored = ledger.get(event_id)
    assert stored["redacted"] == [{"field": path, "reason": stored["redacted"][0]["reason"]}]
    assert reason in stored["redacted"][0]["reason"]
    # The value is gone from the stored event and from the log bytes.
    assert "[redacted]" in json.dumps(stored)
    raw = (ledger.dir / "log.jsonl").read_text()
    for piece in ("AB123456C", "943 476 5919", "CT9 1AB", "CT91AB", "ct9 1ab", "Alice", "1980-02-03", "MH:3"):
        assert piece not in raw
    # Everything else is kept as given.
    assert stored["person_key"] == event["person_key"] and stored["type"] == event["type"]
    assert len(ledger) == 1


def test_caller_redactions_are_kept_and_extended(ledger):
    event = {**sample_event(0), "purpose": "[redacted]", "note": "AB123456C",
             "redacted": [{"field": "purpose", "reason": "looks like a postcode"}]}
    stored = ledger.get(ledger.append(event))
    assert [r["field"] for r in stored["redacted"]] == ["purpose", "note"]


def test_pseudonymous_ids_and_invalid_nhs_like_numbers_are_accepted(ledger):
    event = sample_event(0)
    event["entity_id"] = "e-9434765918"  # 10 digits but the mod-11 check digit is wrong
    event["extract_id"] = "3f2a" * 8
    ledger.append(event)
    assert len(ledger) == 1


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda e: e.pop("type"), "type"),
        (lambda e: e.pop("actor"), "actor"),
        (lambda e: e["actor"].pop("role"), "actor.role"),
        (lambda e: e.update(time="yesterday"), "time"),
        (lambda e: e.update(event_id="ev-1"), "event_id"),
        (lambda e: e.update(score=object()), "not JSON"),
    ],
)
def test_append_rejects_malformed_events(ledger, mutate, reason):
    event = sample_event(0)
    mutate(event)
    with pytest.raises(EventRejected, match=reason):
        ledger.append(event)


def test_one_bad_event_in_append_many_writes_nothing(ledger):
    bad = sample_event(1)
    del bad["actor"]
    with pytest.raises(EventRejected):
        ledger.append_many([sample_event(0), bad])
    assert len(ledger) == 0


def test_crash_mid_append_torn_tail_is_reported_and_earlier_entries_stay(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=4) as led:
        led.append_many([sample_event(i) for i in range(6)])
        pem = public_pem(led)
    log = ledger_dir / "log.jsonl"
    good = log.read_bytes()
    # Simulate a crash half-way through writing the next record.
    with open(log, "ab") as fh:
        fh.write(b'{"event":{"actor":{"id":"u1"},"type":"summary.disc')

    result = verify_ledger(ledger_dir, pem)
    assert result.ok, result.problems
    assert result.entries == 6
    assert result.torn_tail is not None and result.torn_tail["log_offset"] == len(good)
    assert any("torn write" in n for n in result.notices)

    with Ledger(ledger_dir, signing_key, checkpoint_every=4) as led:
        assert len(led) == 6  # nothing earlier lost
        assert [index_of(e["event_id"]) for e in led.events()][-1] == 5
        assert index_of(led.append(sample_event(6))) == 6
        reports = led.torn_tail_reports()
    assert len(reports) == 1 and reports[0]["entries_before"] == 6
    assert (ledger_dir / reports[0]["quarantined_to"]).read_bytes().startswith(b'{"event"')
    result = verify_ledger(ledger_dir, pem)
    assert result.ok and result.entries == 7 and result.torn_tail is None
    assert any("recovered torn tail" in n for n in result.notices)


def test_caches_lost_after_crash_are_rebuilt_from_the_log(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key) as led:
        led.append_many([sample_event(i) for i in range(13)])
        root = led.root()
    # The caches are written after the fsync and never synced: lose some of them.
    (ledger_dir / "offsets.bin").write_bytes((ledger_dir / "offsets.bin").read_bytes()[:8 * 5])
    (ledger_dir / "tree" / "level-00.bin").write_bytes(b"")
    (ledger_dir / "tree" / "level-02.bin").unlink()
    with Ledger(ledger_dir, signing_key) as led:
        assert len(led) == 13
        assert led.root() == root
        proof = led.inclusion_proof(id_at(led, 12))
        assert proof["leaf_hash"] == leaf_hash(led.get(id_at(led, 12))).hex()


def test_damage_in_the_middle_is_not_mistaken_for_a_torn_tail(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key) as led:
        led.append_many([sample_event(i) for i in range(3)])
    log = ledger_dir / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    (ledger_dir / "offsets.bin").write_bytes(b"")  # force a re-index of the whole log
    log.write_bytes(lines[0] + b"garbage\n" + lines[2])
    with pytest.raises(LedgerError, match="not a torn write"):
        Ledger(ledger_dir, signing_key)
    assert log.read_bytes() == lines[0] + b"garbage\n" + lines[2]  # nothing discarded


def test_concurrent_appends_from_threads_lose_nothing(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=50) as led:
        ids: list[str] = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for i in range(60):
                event_id = led.append(sample_event(t * 1000 + i))
                with lock:
                    ids.append(event_id)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(index_of(i) for i in ids) == list(range(360))
        keys = sorted(e["person_key"] for e in led.events())
        assert keys == sorted(sample_event(t * 1000 + i)["person_key"] for t in range(6) for i in range(60))
        pem = public_pem(led)
    assert verify_ledger(ledger_dir, pem, checkpoint_every=50).ok


def _process_worker(ledger_dir: str, key: str, worker: int, count: int, out: str) -> None:
    with Ledger(Path(ledger_dir), Path(key), checkpoint_every=25) as led:
        ids = []
        for i in range(count):
            if i % 10 == 0:
                ids += led.append_many([sample_event(worker * 10000 + i + j) for j in range(3)])
            else:
                ids.append(led.append(sample_event(worker * 10000 + i + 100)))
    Path(out).write_text(json.dumps(ids))


def test_concurrent_appends_from_processes_lose_nothing(ledger_dir, signing_key, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for w in range(4):
        out = tmp_path / f"ids-{w}.json"
        p = ctx.Process(target=_process_worker, args=(str(ledger_dir), str(signing_key), w, 50, str(out)))
        p.start()
        procs.append((p, out))
    for p, _ in procs:
        p.join(60)
        assert p.exitcode == 0
    all_ids = [i for _, out in procs for i in json.loads(out.read_text())]
    assert len(all_ids) == 4 * (45 + 5 * 3)
    assert sorted(index_of(i) for i in all_ids) == list(range(len(all_ids)))
    with Ledger(ledger_dir, signing_key) as led:
        assert len(led) == len(all_ids)
        pem = public_pem(led)
    result = verify_ledger(ledger_dir, pem, checkpoint_every=25)
    assert result.ok, result.problems
    assert result.checkpoints_checked >= len(all_ids) // 25
