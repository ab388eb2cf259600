"""Record first, then apply: a crash between the two (simulated by an apply that never
happens) leaves the event, and the next `open_service` applies it, once."""

from __future__ import annotations

import pytest

from joinedup import operations as ops
from joinedup.operations import linkage as linkage_ops
from joinedup.users import User

PERSON = {"given_name": "Ada", "family_name": "Lovelace", "date_of_birth": "1990-02-03"}
ADVISER = User(id="adv-1", role="adviser", organisation="csc-margate")
OFFICER = User(id="do-1", role="data_officer", organisation="linkage-unit")


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def _crash(*_args, **_kwargs):
    raise Crash()


def test_a_grant_recorded_but_not_applied_is_applied_on_open(home, monkeypatch):
    ctx = ops.open_service(home)
    monkeypatch.setattr(ctx.consent, "apply", _crash)
    with pytest.raises(Crash):
        ops.grant_consent(ctx, ADVISER, ops.GrantConsent(PERSON, ["employment_support"],
                                                         ["dwp"]))
    events = [e for e in ctx.ledger.events() if e["type"] == "consent.granted"]
    key = ctx.person_key(PERSON)
    assert len(events) == 1 and ctx.consent.records(key) == []  # event, no effect yet
    ctx.close()
    monkeypatch.undo()

    ctx = ops.open_service(home)  # the next start
    try:
        (record,) = ctx.consent.records(key)
        assert record.receipt_id == events[0]["receipt_id"]
        assert ops.recover(ctx).reapplied == {}  # applied once only
        with ctx.store() as cur:
            assert cur.execute("SELECT count(*) FROM consent_events").fetchall()[0][0] == 1
    finally:
        ctx.close()


def test_a_withdrawal_recorded_but_not_applied_is_applied_on_open(home, monkeypatch):
    ctx = ops.open_service(home)
    granted = ops.grant_consent(ctx, ADVISER, ops.GrantConsent(PERSON, ["employment_support"],
                                                               ["dwp"]))
    monkeypatch.setattr(ctx.consent, "apply", _crash)
    with pytest.raises(Crash):
        ops.withdraw_consent(ctx, ADVISER, ops.WithdrawConsent(granted.receipt_id))
    ctx.close()
    monkeypatch.undo()
    ctx = ops.open_service(home)
    try:
        assert ctx.consent.record(granted.receipt_id).withdrawn_at is not None
    finally:
        ctx.close()


def test_a_run_switch_recorded_but_not_applied_is_applied_on_open(home, monkeypatch):
    run = home.runs_dir / "run-2"
    run.mkdir()
    summary = {"run_id": "r2", "extracts": [], "records": 0, "entities": 0}
    ctx = ops.open_service(home)
    monkeypatch.setattr(linkage_ops, "switch_current", _crash)
    with pytest.raises(Crash):
        linkage_ops.commit_run(ctx, OFFICER, linkage_ops.CommitRun(run, summary))
    assert not (home.runs_dir / "CURRENT").exists()
    ctx.close()
    monkeypatch.undo()
    ops.open_service(home).close()
    assert (home.runs_dir / "CURRENT").read_text().strip() == "run-2"
