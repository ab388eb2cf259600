"""kill -9 a process appending in a loop, at random moments, again and again.

After every kill the ledger opens (recovering a torn tail if there is one), verifies against
the witness, still holds every entry it acknowledged and every complete entry seen before,
and never gives an event id twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit import Ledger
from audit.ledger import index_of
from audit.verify import verify_ledger

pytestmark = pytest.mark.slow

ROUNDS = 20

# The writer: batches of 1-6 events, some of them large (so that a write can be cut), with
# checkpoints every 7 entries and every 50 ms, so the kill also lands in checkpoint writes.
# After each append returns it notes the ids: those are the acknowledged ones.
WRITER = r"""
import json, random, sys
from pathlib import Path
from audit import Ledger
ledger_dir, key, witness, acked, seed = sys.argv[1:6]
rng = random.Random(int(seed))
with open(acked, "a") as out, Ledger(ledger_dir, key, checkpoint_every=7,
                                      checkpoint_seconds=0.05, witness=witness) as led:
    print("ready", flush=True)
    i = 0
    while True:
        batch = []
        for _ in range(rng.randint(1, 6)):
            pad = "x" * (rng.choice([10, 100, 1000, 200_000]))
            batch.append({"type": "summary.disclosed", "actor": {"id": "u1", "role": "adviser",
                          "organisation": "csc-1"}, "person_key": f"{i:064x}", "note": pad})
            i += 1
        ids = led.append_many(batch)
        out.write(json.dumps({"ids": ids, "keys": [e["person_key"] for e in batch]}) + "\n")
        out.flush()
"""


def test_kill_9_while_appending_loses_nothing_and_reuses_no_id(tmp_path, signing_key):
    ledger_dir, witness, acked = tmp_path / "ledger", tmp_path / "board", tmp_path / "acked.jsonl"
    rng = random.Random(20261202)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    seen: dict[str, int] = {}  # every id ever in the log -> its position
    torn_rounds = 0
    lost_ids: set[str] = set()  # ids of unacknowledged entries a torn write took away
    for round_no in range(ROUNDS):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ledger_dir), str(signing_key), str(witness),
             str(acked), str(round_no)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        assert writer.stdout.readline() == b"ready\n", writer.stderr.read().decode()
        time.sleep(rng.uniform(0.02, 0.5))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert writer.returncode == -signal.SIGKILL, writer.stderr.read().decode()[-2000:]

        if round_no % 2:
            lost_ids |= _tear_the_unacknowledged_tail(ledger_dir, witness, acked, rng)
        pem = (ledger_dir / "audit-public.pem").read_bytes()
        before = verify_ledger(ledger_dir, pem, checkpoint_every=7, witness=witness)
        assert before.ok, (round_no, before.problems)
        torn_rounds += before.torn_tail is not None
        # Opening for writing recovers the torn tail, if any; the ledger then verifies.
        with Ledger(ledger_dir, signing_key, checkpoint_every=7, witness=witness) as led:
            events = list(led.events())
        after = verify_ledger(ledger_dir, pem, checkpoint_every=7, witness=witness)
        assert after.ok and after.torn_tail is None, (round_no, after.problems)

        ids = [e["event_id"] for e in events]
        assert [index_of(i) for i in ids] == list(range(len(ids)))
        assert len(set(ids)) == len(ids)
        # Nothing complete is ever lost, and no id comes back at another position.
        position = {event_id: n for n, event_id in enumerate(ids)}
        for event_id, n in seen.items():
            assert position.get(event_id) == n, f"round {round_no}: {event_id} lost or moved"
        seen.update(position)
        assert not lost_ids & set(ids), f"round {round_no}: an id of a lost entry was issued again"
        # Every acknowledged append is there, with its content.
        by_id = {e["event_id"]: e for e in events}
        for line in acked.read_text().splitlines():
            note = json.loads(line)
            for event_id, key in zip(note["ids"], note["keys"], strict=True):
                assert by_id[event_id]["person_key"] == key
    assert len(seen) > ROUNDS  # the writers did write
    assert torn_rounds >= 1  # recovery ran for real at least once
    print(f"{ROUNDS} kills, {len(seen)} entries, {torn_rounds} torn tails recovered, "
          f"{len(lost_ids)} unacknowledged entries lost with them")


def _tear_the_unacknowledged_tail(ledger_dir: Path, witness: Path, acked: Path, rng) -> set[str]:
    """Leave what a kill (or power cut) in the middle of a write leaves: the log cut at a
    random byte after everything acknowledged or covered by a checkpoint. Returns the ids of
    the complete entries that went with it (never acknowledged, so they may be lost)."""
    from audit.ledger import last_checkpoint_in
    from audit.records import decode_record

    acknowledged = [index_of(i) for line in acked.read_text().splitlines() for i in json.loads(line)["ids"]]
    covered = max((c or {}).get("tree_size", 0) for c in (
        last_checkpoint_in(ledger_dir / "checkpoints.jsonl"), last_checkpoint_in(witness / "checkpoints.jsonl")))
    keep_entries = max(max(acknowledged, default=-1) + 1, covered)
    log = ledger_dir / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    keep = sum(len(line) for line in lines[:keep_entries])
    size = log.stat().st_size
    if size - keep < 2:
        return set()
    cut = rng.randrange(keep + 1, size)
    lost = set()
    offset = 0
    for line in lines:
        if offset + len(line) > cut and line.endswith(b"\n"):
            lost.add(decode_record(line).event["event_id"])
        offset += len(line)
    os.truncate(log, cut)
    return lost
