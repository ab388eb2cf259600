"""Identifier-looking input in a free-text or code field is invalid input (422), recorded as
one `request.invalid` entry with the value redacted; the ledger guard never turns a request
into a 500. A bad date in the audit report is a 422 that neither echoes nor logs the input."""

from __future__ import annotations

import logging

from joinedup.users import open_user_store

PERSON = {"given_name": "Ada", "family_name": "Lovelace", "date_of_birth": "1990-02-03"}
POSTCODE = "CT91AB"  # the example: a full postcode in a code field


def _ledger_text(home) -> str:
    return "".join(p.read_text(errors="replace") for p in home.ledger_dir.rglob("*")
                   if p.is_file())


def test_identifier_in_a_code_field_is_422_and_recorded_redacted(live, home):
    store = open_user_store(home)
    adviser = store.add("adviser", "csc-margate")[1]
    provider = store.add("provider", "provider-a")[1]
    ledger = live.app.state.ctx.ledger
    cases = [
        ("/v1/consent", {"identifiers": PERSON, "purposes": ["employment_support"],
                         "categories": ["dwp", POSTCODE]}),
        ("/v1/consent", {"identifiers": PERSON, "purposes": [POSTCODE], "categories": ["dwp"]}),
        ("/v1/referrals", {"identifiers": PERSON, "provider": "provider-a",
                           "barriers": ["MH", POSTCODE]}),
        ("/v1/summaries", {"identifiers": PERSON, "purpose": POSTCODE}),
        ("/v1/summaries", {"identifiers": PERSON, "categories": ["AB123456C"]}),
    ]
    with live.client(adviser) as c:
        for path, body in cases:
            before = ledger.size
            r = c.post(path, json=body)
            assert r.status_code == 422, (path, r.text)
            assert POSTCODE not in r.text and "AB123456C" not in r.text
            assert r.json()["problems"], r.text
            new = list(ledger.events(before))
            assert [e["type"] for e in new] == ["request.invalid"], (path, new)
    assert POSTCODE not in _ledger_text(home) and "AB123456C" not in _ledger_text(home)
    with live.client(provider) as p:  # nothing half-stored that breaks a later listing
        assert p.get("/v1/referrals").status_code == 200


def test_bad_report_date_is_422_without_echo_or_log(live, home, caplog):
    board = open_user_store(home).add("governance", "governance-board")[1]
    with caplog.at_level(logging.DEBUG), live.client(board) as c:
        for bad in ("2026-13-45", "not-a-date", "CT9 1AB"):
            r = c.get("/v1/audit/report", params={"from": bad})
            assert r.status_code == 422, r.text
            assert bad not in r.text
        assert c.get("/v1/audit/report", params={"from": "2026-01-01"}).status_code == 200
    server_logs = [rec.getMessage() for rec in caplog.records
                   if not rec.name.startswith("httpx")]  # the test client logs its own URLs
    assert server_logs is not None
    assert not any(bad in line for line in server_logs for bad in ("2026-13-45", "not-a-date"))


def test_second_withdrawal_is_409(live, home):
    adviser = open_user_store(home).add("adviser", "csc-margate")[1]
    with live.client(adviser) as c:
        r = c.post("/v1/consent", json={"identifiers": PERSON, "purposes": ["employment_support"],
                                        "categories": ["dwp"]})
        receipt = r.json()["receipt_id"]
        assert c.post(f"/v1/consent/{receipt}/withdraw").status_code == 200
        again = c.post(f"/v1/consent/{receipt}/withdraw")
        assert again.status_code == 409 and again.json()["error"] == "conflict"


def test_a_failing_policy_engine_refuses_and_is_recorded(live, home, monkeypatch):
    adviser = open_user_store(home).add("adviser", "csc-margate")[1]
    ctx = live.app.state.ctx

    def broken(_input):
        raise RuntimeError("engine down")

    monkeypatch.setattr(ctx.policy, "decide", broken)
    before = ctx.ledger.size
    with live.client(adviser) as c:
        r = c.post("/v1/consent", json={"identifiers": PERSON, "purposes": ["employment_support"],
                                        "categories": ["dwp"]})
    assert r.status_code == 403 and "could not be evaluated" in r.text
    new = list(ctx.ledger.events(before))
    assert len(new) == 1 and new[0]["outcome"] == "refused"
    assert ctx.consent.records(ctx.person_key(PERSON)) == []
