"""Each API request is exactly ONE ledger entry, for every kind of request, and that entry
carries the policy decision (id, keyed input hash, result, bundle revision): N requests of a
kind → N new entries of the expected type. Over real HTTP on a real linked demo home."""

from __future__ import annotations

import pytest

from audit.report import decisions_in
from joinedup.users import open_user_store

from .conftest import claimants, serve

N = 3
CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN",
              "SKL", "CAR", "CLV", "FAM", "WRK"]
DECISION_FIELDS = ("decision_id", "input_hash", "allow", "bundle_revision", "action")


@pytest.fixture(scope="module")
def service(linked_home):
    from joinedup.api import create_app

    store = open_user_store(linked_home)
    tokens = {role: store.add(role, org)[1] for role, org in (
        ("adviser", "csc-margate"), ("provider", "provider-b"),
        ("governance", "governance-board"), ("data_officer", "linkage-unit"))}
    live = serve(create_app(linked_home))
    try:
        yield live, tokens, linked_home
    finally:
        live.stop()
        live.app.state.ctx.close()


def _new_entries(live, requests) -> list[dict]:
    """Run the requests; return the ledger entries they wrote."""
    ledger = live.app.state.ctx.ledger
    before = ledger.size
    for request in requests:
        request()
    return list(ledger.events(before))


def _check(entries: list[dict], expected_type: str, allow: bool = True) -> None:
    assert len(entries) == N, [e["type"] for e in entries]
    for entry in entries:
        assert entry["type"] == expected_type
        decisions = decisions_in(entry)
        assert len(decisions) == 1, entry
        for name in DECISION_FIELDS:
            assert decisions[0].get(name) not in (None, ""), (name, entry)
        assert decisions[0]["allow"] is allow


@pytest.mark.slow
def test_each_request_kind_writes_exactly_one_entry(service):
    live, tokens, home = service
    people = claimants(home, 40)[20:]  # not the people other tests consent
    adviser = live.client(tokens["adviser"])
    provider = live.client(tokens["provider"])
    governance = live.client(tokens["governance"])
    officer = live.client(tokens["data_officer"])

    def expect(client, method, path, status, **kw):
        def run():
            r = client.request(method, path, **kw)
            assert r.status_code == status, (path, r.text)
            return r
        return run

    # Refusals: summaries of people who have not consented.
    _check(_new_entries(live, [expect(adviser, "POST", "/v1/summaries", 403,
                                      json={"identifiers": p}) for p in people[:N]]),
           "policy.decision", allow=False)

    receipts: list[str] = []
    grants = [expect(adviser, "POST", "/v1/consent", 201,
                     json={"identifiers": p, "purposes": ["employment_support"],
                           "categories": CATEGORIES}) for p in people[:N]]
    entries = _new_entries(live, [lambda g=g: receipts.append(g().json()["receipt_id"])
                                  for g in grants])
    _check(entries, "consent.granted")

    # Disclosures: summaries of consenting people (matched ones carry the decision;
    # a needs-review answer is one decision entry saying nothing was disclosed).
    outcomes: list[str] = []

    def summary(p):
        def run():
            r = adviser.post("/v1/summaries", json={"identifiers": p})
            assert r.status_code == 200, r.text
            outcomes.append(r.json()["outcome"])
        return run

    entries = _new_entries(live, [summary(p) for p in people[:N]])
    assert len(entries) == N
    for entry, outcome in zip(entries, outcomes, strict=True):
        expected = "summary.disclosed" if outcome == "matched" else "policy.decision"
        assert entry["type"] == expected and len(decisions_in(entry)) == 1
        assert entry["decision"]["decision_id"] == entry["decision_id"] if outcome == "matched" \
            else entry["outcome"] == outcome and entry["disclosed"] is False
    assert "matched" in outcomes

    # Allowed, nothing to disclose: a consenting person who is not in the linked data.
    ghosts = [{"given_name": "Zebedee", "family_name": f"Quorn{'x' * i}",
               "date_of_birth": f"0{i + 1}/01/1961"} for i in range(N)]
    for ghost in ghosts:
        adviser.post("/v1/consent", json={"identifiers": ghost, "purposes": ["employment_support"],
                                          "categories": CATEGORIES})
    entries = _new_entries(live, [expect(adviser, "POST", "/v1/summaries", 200,
                                         json={"identifiers": g}) for g in ghosts])
    _check(entries, "policy.decision")
    assert all(e["outcome"] == "no_match" and e["disclosed"] is False for e in entries)

    matched = [p for p, o in zip(people, outcomes, strict=False) if o == "matched"]
    referral_ids: list[str] = []
    entries = _new_entries(live, [
        lambda: referral_ids.append(adviser.post("/v1/referrals", json={
            "identifiers": matched[0], "provider": "provider-b", "barriers": ["WRK", "SKL"]}
        ).json()["referral_id"]) for _ in range(N)])
    _check(entries, "referral.created")

    _check(_new_entries(live, [expect(provider, "GET", f"/v1/referrals/{rid}", 200)
                               for rid in referral_ids]), "referral.read")
    listed = _new_entries(live, [expect(provider, "GET", "/v1/referrals", 200)] * N)
    assert [e["type"] for e in listed] == ["referral.listed"] * N
    assert all(len(decisions_in(e)) == len(referral_ids) for e in listed)
    _check(_new_entries(live, [expect(governance, "GET", "/v1/area-counts", 200)] * N),
           "area_counts.disclosed")
    _check(_new_entries(live, [expect(governance, "GET", "/v1/audit/verify", 200)] * N),
           "policy.decision")
    _check(_new_entries(live, [expect(officer, "GET", "/v1/linkage/status", 200)] * N),
           "policy.decision")
    _check(_new_entries(live, [expect(adviser, "POST", f"/v1/consent/{r}/withdraw", 200)
                               for r in receipts]), "consent.withdrawn")
    for client in (adviser, provider, governance, officer):
        client.close()


@pytest.mark.slow
def test_the_governance_report_counts_decisions_carried_by_disclosures(service):
    live, tokens, home = service
    person = claimants(home, 60)[50]
    with live.client(tokens["adviser"]) as c:
        c.post("/v1/consent", json={"identifiers": person, "purposes": ["employment_support"],
                                    "categories": CATEGORIES})
        c.post("/v1/summaries", json={"identifiers": person})
    with live.client(tokens["governance"]) as g:
        report = g.get("/v1/audit/report").json()
    events = list(live.app.state.ctx.ledger.events())
    decided = sum(len(decisions_in(e)) for e in events[:-1])  # the report's own is last
    counted = report["decisions"]["allowed"] + report["decisions"]["denied"]
    assert counted == decided and decided > report["events_by_type"].get("policy.decision", 0)
