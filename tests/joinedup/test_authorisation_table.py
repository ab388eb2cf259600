"""Must show (issue 11): a table-driven authorisation suite over every role, organisation,
purpose and consent state, against the real server (uvicorn on 127.0.0.1, real HTTP):

* 0 requests allowed that should be refused (the expected answer is worked out from the
  table's rules, not from the service);
* 0 refusals that tell a role something it may not know: for every caller who may not
  know about the person, the answer (status and body, less the random decision id) is the
  same whatever the person's state (no consent, consent, withdrawn, not in the data,
  unknown ids);
* exactly one ledger entry per request (every request here names a person).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from joinedup.home import load_home
from joinedup.users import open_user_store

from .conftest import claimants, serve

CALLERS = [  # role, organisation
    ("adviser", "csc-margate"), ("adviser", "csc-broadstairs"), ("provider", "provider-a"),
    ("provider", "provider-b"), ("governance", "governance-board"),
    ("data_officer", "linkage-unit"), ("citizen", "public"), ("admin", "joinedup-ops"),
]
HOLDER = ("adviser", "csc-margate")  # the organisation that records every consent here
def _purposes() -> list[str]:
    """Every purpose the shipped policy data knows, and one it does not."""
    from policies import bundle

    doc = json.loads((Path(bundle.__file__).parent / "data" / "purposes.json").read_text())
    return sorted(doc["purposes"]) + ["not_a_purpose"]


PURPOSES = _purposes()
STATES = ["none", "active", "withdrawn", "stranger_active", "stranger_none"]
CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN",
              "SKL", "CAR", "CLV", "FAM", "WRK"]


def _policy_with_a_second_centre(home) -> None:
    """The deployment's policy data with a second Citizen Support centre, so that an
    adviser of an organisation that does NOT hold the consent can be asked about."""
    from policies import bundle

    shipped = Path(bundle.__file__).parent / "data"
    target = home.config_dir / "policy"
    shutil.copytree(shipped, target, dirs_exist_ok=True)
    orgs = json.loads((target / "organisations.json").read_text())
    orgs["organisations"]["csc-broadstairs"] = {"name": "Citizen Support centre, Broadstairs",
                                                "kind": "citizen_support"}
    (target / "organisations.json").write_text(json.dumps(orgs))


@pytest.fixture(scope="module")
def world(demo_run, tmp_path_factory):
    from joinedup.api import create_app

    root = tmp_path_factory.mktemp("authz") / "home"
    shutil.copytree(demo_run[0], root)
    home = load_home(root)
    _policy_with_a_second_centre(home)
    store = open_user_store(home)
    tokens = {c: store.add(*c)[1] for c in CALLERS}
    people = claimants(home, 60)[40:]  # people no other test consents
    stranger = {"given_name": "Zebedee", "family_name": "Quillfeather",
                "date_of_birth": "1931-07-04"}
    stranger2 = {"given_name": "Ondine", "family_name": "Marchbanks",
                 "date_of_birth": "1929-03-02"}
    live = serve(create_app(home))
    try:
        with live.client(tokens[HOLDER]) as c:
            persons = {"none": people[0], "active": people[1], "withdrawn": people[2],
                       "stranger_active": stranger, "stranger_none": stranger2}
            receipts = {}
            for state in ("active", "withdrawn", "stranger_active"):
                r = c.post("/v1/consent", json={"identifiers": persons[state],
                                                "purposes": ["employment_support"],
                                                "categories": CATEGORIES})
                assert r.status_code == 201, r.text
                receipts[state] = r.json()["receipt_id"]
            r = c.post("/v1/referrals", json={"identifiers": persons["withdrawn"],
                                              "provider": "provider-a", "barriers": ["MH"]})
            assert r.status_code == 201, r.text
            withdrawn_referral = r.json()["referral_id"]
            r = c.post("/v1/referrals", json={"identifiers": persons["active"],
                                              "provider": "provider-a", "barriers": ["MH"]})
            assert r.status_code == 201, r.text
            active_referral = r.json()["referral_id"]
            assert c.post(f"/v1/consent/{receipts['withdrawn']}/withdraw").status_code == 200
        yield live, tokens, persons, receipts, {"active": active_referral,
                                                 "withdrawn": withdrawn_referral}
    finally:
        live.stop()
        live.app.state.ctx.close()


def _expected_summary(caller, state, purpose) -> int:
    if caller == HOLDER and purpose == "employment_support" and state in ("active",
                                                                          "stranger_active"):
        return 200  # a summary, or "no match" for the stranger (told to the holder only)
    return 403


def _expected_referral_create(caller, state, purpose) -> int:
    if caller == HOLDER and purpose == "employment_support" and state == "active":
        return 201
    if caller == HOLDER and purpose == "employment_support" and state == "stranger_active":
        return 404  # allowed, then not in the linked data: the holder may know that
    return 403


def _shape(response) -> tuple:
    body = response.json()
    body.pop("decision_id", None)
    return response.status_code, json.dumps(body, sort_keys=True)


@pytest.mark.slow
def test_every_role_organisation_purpose_and_consent_state(world):
    live, tokens, persons, receipts, referrals = world
    ledger = live.app.state.ctx.ledger
    wrong_allows, leaks, entries = [], [], []
    answers: dict[tuple, dict[str, tuple]] = {}

    def ask(caller, kind, key, method, path, expected, **kw):
        before = ledger.size
        with live.client(tokens[caller]) as c:
            r = c.request(method, path, **kw)
        entries.append((caller, kind, key, ledger.size - before))
        if r.status_code < 300 and expected >= 300:
            wrong_allows.append((caller, kind, key, r.status_code))
        assert r.status_code == expected, (caller, kind, key, r.text)
        answers.setdefault((caller, kind, key[1:]), {})[key[0]] = _shape(r)

    for caller, state, purpose in itertools.product(CALLERS, STATES, PURPOSES):
        who = persons[state]
        ask(caller, "summary", (state, purpose), "POST", "/v1/summaries",
            _expected_summary(caller, state, purpose),
            json={"identifiers": who, "purpose": purpose})
        ask(caller, "referral.create", (state, purpose), "POST", "/v1/referrals",
            _expected_referral_create(caller, state, purpose),
            json={"identifiers": who, "provider": "provider-b", "barriers": ["HOU"],
                  "purpose": purpose} if state != "active" or caller != HOLDER else
            {"identifiers": who, "provider": "provider-a", "barriers": ["HOU"],
             "purpose": purpose})
    for caller in CALLERS:
        for state in ("active", "withdrawn", "unknown"):
            receipt = receipts.get(state, "0" * 32)
            holder_may = caller == HOLDER and state != "unknown"
            ask(caller, "receipt", (state,), "GET", f"/v1/consent/{receipt}/receipt",
                200 if holder_may else 403)
            referral = referrals.get(state, "ref-" + "0" * 32)
            allowed = caller == ("provider", "provider-a") and state == "active"
            ask(caller, "referral.read", (state,), "GET", f"/v1/referrals/{referral}",
                200 if allowed else 403)

    # Who may know about the person: the holder of the consent (and the provider the
    # person was referred to, for its referral). Everyone else gets one answer for all.
    for (caller, kind, _), by_state in answers.items():
        if caller == HOLDER or (kind == "referral.read" and caller == ("provider", "provider-a")):
            continue
        if len(set(by_state.values())) != 1:
            leaks.append((caller, kind, by_state))
    assert wrong_allows == [], wrong_allows
    assert leaks == [], leaks
    assert [e for e in entries if e[3] != 1] == []
    assert len(entries) >= len(CALLERS) * len(STATES) * len(PURPOSES) * 2
    print(f"{len(entries)} requests: 0 wrongly allowed, 0 leaks, one ledger entry each")
