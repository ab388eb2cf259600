"""Finish, when the service opens, every effect whose ledger event was written before a
crash: an action records its event first and applies it after, so after a kill -9 the
ledger may hold an event whose effect is missing, never the reverse.

The events read are those appended since the last recovery (a watermark kept in the
store); each effect is applied idempotently, keyed by the event's ids:

| event               | effect re-applied                               |
|---------------------|-------------------------------------------------|
| consent.granted     | the consent row (the event carries the record)  |
| consent.withdrawn   | the withdrawal row                              |
| referral.created    | the referral row (the event carries every column)|
| linkage.run         | runs/CURRENT names the last recorded run        |
| linkage.rollback    | (the same: the run rolled back to)              |
| linkage.review_label| the label in HOME/review (keyed by the event id)|
| a needs_review outcome with a `review_request` | the request in HOME/review (keyed by the event id) |

A run is found by the event's `run` (its directory name), else by its `run_id` (a directory
of that name, or the run whose summary.json has that run_id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from consent import ConsentRecord
from joinedup.operations.linkage import switch_current
from joinedup.operations.referrals import insert_referral, referral_from_event
from joinedup.operations.review import apply_label, apply_review_request
from joinedup.service_context import ServiceContext

WATERMARK_DDL = "CREATE TABLE IF NOT EXISTS ops_recovered (ledger_size BIGINT NOT NULL)"


@dataclass
class Recovered:
    scanned: int = 0
    reapplied: dict[str, int] = field(default_factory=dict)


def recover(ctx: ServiceContext) -> Recovered:
    """Re-apply what a crash left recorded but not applied; returns what was done."""
    done = Recovered()
    with ctx.store(write=True) as cur:
        cur.execute(WATERMARK_DDL)
        rows = cur.execute("SELECT max(ledger_size) FROM ops_recovered").fetchall()
    start = int(rows[0][0] or 0) if rows else 0
    ledger = ctx.ledger
    end = ledger.size
    if start > end:  # a ledger replaced under us: check all of it
        start = 0
    last_run_event: dict | None = None
    for event in ledger.events(start, end):
        done.scanned += 1
        kind = event.get("type")
        if kind in ("consent.granted", "consent.withdrawn") and isinstance(event.get("record"), dict):
            record = ConsentRecord(**event["record"])
            if ctx.consent.apply(kind.split(".")[1], record, event["event_id"]):
                done.reapplied[kind] = done.reapplied.get(kind, 0) + 1
        elif kind == "referral.created" and "referral_id" in event:
            if insert_referral(ctx, referral_from_event(event)):
                done.reapplied[kind] = done.reapplied.get(kind, 0) + 1
        elif kind == "linkage.review_label" and event.get("pair_id"):
            if apply_label(ctx, event):
                done.reapplied[kind] = done.reapplied.get(kind, 0) + 1
        elif isinstance(event.get("review_request"), dict):
            if apply_review_request(ctx, event):
                done.reapplied["review_request"] = done.reapplied.get("review_request", 0) + 1
        elif kind in ("linkage.run", "linkage.rollback"):
            last_run_event = event
    last_run = recorded_run(ctx.home.runs_dir, last_run_event) if last_run_event else None
    if last_run is not None:
        marker = ctx.home.runs_dir / "CURRENT"
        current = marker.read_text().strip() if marker.exists() else None
        if current != last_run:
            action = "rollback" if last_run_event["type"] == "linkage.rollback" else "link"
            switch_current(ctx.home.runs_dir, last_run, action=action, actor="recovery")
            done.reapplied[last_run_event["type"]] = 1
    with ctx.store(write=True) as cur:
        cur.execute("DELETE FROM ops_recovered")
        cur.execute("INSERT INTO ops_recovered VALUES (?)", [end])
    return done


def recorded_run(runs_dir: Path, event: dict) -> str | None:
    """The run (CURRENT's form of its name) a linkage event made current, if it exists."""
    name = event.get("run")
    if isinstance(name, str) and (runs_dir / name).is_dir():
        return name
    run_id = event.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return None
    if (runs_dir / run_id).is_dir():
        return run_id
    for summary in sorted(runs_dir.glob("*/summary.json")):
        try:
            if json.loads(summary.read_text()).get("run_id") == run_id:
                return summary.parent.name
        except (OSError, ValueError):
            continue
    return None
