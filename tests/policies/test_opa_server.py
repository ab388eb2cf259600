"""The OPA-server adapter against a real OPA server (`opa run --server` on 127.0.0.1, built by
scripts/opa.sh): it publishes the bundle, decides as the embedded engines do, refuses when OPA
is down, and OPA's decision ids are the ledger's."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from policies import PolicyEngine, engine_from_settings
from policies.opa_server import UNREACHABLE_REASON
from policies.opa_tool import OpaServer, free_loopback_port
from tests.policies.test_equivalence import generate

NOW = "2026-11-22T10:00:00Z"
PERSON = "ab" * 32
GOVERNANCE = {"id": "g1", "role": "governance", "organisation": "governance-board"}


def summary_request(**consent_changes) -> dict:
    consent = {"status": "active", "purposes": ["employment_support"], "person_key": PERSON,
               "categories": ["dwp", "nhs", "MH", "HOU"], "expires_at": "2027-11-22T10:00:00Z"}
    consent.update(consent_changes)
    return {"subject": {"id": "u1", "role": "adviser", "organisation": "csc-margate"},
            "action": "summary.request", "purpose": "employment_support", "time": NOW,
            "resource": {"person_key": PERSON, "categories": ["MH", "SUB", "HOU"]}, "consent": consent}


@pytest.fixture(scope="module")
def opa_server(tmp_path_factory):
    with OpaServer(tmp_path_factory.mktemp("opa") / "opa.log") as server:
        yield server


@pytest.fixture(scope="module")
def published(opa_server):
    engine = PolicyEngine.opa(opa_server.url)
    engine.publish()
    yield engine
    engine.close()


def test_publish_uploads_the_bundle(opa_server, published):
    with urllib.request.urlopen(f"{opa_server.url}/v1/policies") as reply:
        ids = {p["id"] for p in json.load(reply)["result"]}
    assert {"authz", "consent", "agreements", "request", "joinedup_decision_log_mask"} <= ids
    with urllib.request.urlopen(f"{opa_server.url}/v1/data/indexes/grants/adviser") as reply:
        assert "summary.request" in json.load(reply)["result"]


def test_opa_server_decides_as_the_embedded_engines(published):
    regopy, compiled = PolicyEngine.embedded(), PolicyEngine.compiled()
    requests = generate(300, seed=21)
    allowed = 0
    for request in requests:
        remote = published.decide(request)
        for local in (regopy.decide(request), compiled.decide(request)):
            assert (remote.allow, remote.reasons, remote.obligations) == (
                local.allow, local.reasons, local.obligations), request
        assert remote.bundle_revision == regopy.bundle_revision
        allowed += remote.allow
    assert 30 < allowed < len(requests) - 30


def test_decision_ids_in_opas_log_resolve_to_ledger_entries(opa_server, published, tmp_path):
    """The service, configured for OPA, records OPA's decision id in its ledger; OPA's log
    keeps no detail of the person (the mask), only the id and the answer."""
    from joinedup.errors import Refused
    from joinedup.home import init_home
    from joinedup.operations import Action
    from joinedup.service_context import ServiceContext
    from joinedup.users import User

    home = init_home(tmp_path / "home", project_id="opa-test")
    home.settings["policy"] = {"engine": "opa", "opa_url": opa_server.url}
    ctx = ServiceContext(home)
    try:
        governance = User("g1", "governance", "governance-board")
        adviser = User("u1", "adviser", "csc-margate")
        with Action(ctx, governance, "audit.verify", purpose="oversight") as act:
            allowed = act.decide({})
        # no consent recorded: refused (the adviser may be told why), and still in the ledger
        with pytest.raises(Refused), Action(ctx, adviser, "summary.request",
                                            purpose="employment_support") as act:
            act.decide({"person_key": PERSON}, reveal=True)
        ledger = list(ctx.ledger.events())
    finally:
        ctx.close()
    by_id = {e["decision_id"]: e for e in ledger if e.get("type") == "policy.decision"}
    logged = {e["decision_id"]: e for e in opa_server.decision_log()}
    assert allowed.decision_id in logged and allowed.decision_id in by_id
    refusals = [e for e in by_id.values() if not e["allow"]]
    assert len(refusals) == 1 and refusals[0]["decision_id"] in logged
    for decision_id, event in by_id.items():
        entry = logged[decision_id]
        assert entry["result"]["allow"] is event["allow"]
        assert entry["input"]["action"] == event["action"]
        assert entry["input"]["subject"]["id"] == event["actor"]["id"]
        assert "resource" not in entry["input"] and "consent" not in entry["input"]
    # Every ledger decision is in OPA's log once; ids are OPA's (UUIDs), not the service's.
    assert all(len(d) == 36 and d.count("-") == 4 for d in by_id)


def test_opa_down_is_a_refusal_with_a_clear_error(tmp_path):
    with OpaServer(tmp_path / "opa.log") as server:
        engine = PolicyEngine.opa(server.url, timeout=2)
        engine.publish()
        request = {"subject": GOVERNANCE, "action": "audit.verify", "time": NOW}
        assert engine.decide(request).allow
    # The same engine, the server gone: refused, and nothing is allowed.
    down = engine.decide(request)
    assert not down.allow and down.reasons == [UNREACHABLE_REASON] and down.obligations == {}
    assert server.url in down.engine_error and "did not answer" in down.engine_error
    assert down.to_audit_event(b"k" * 32)["engine_error"] == down.engine_error
    for request in generate(10, seed=3):
        assert not engine.decide(request).allow


def test_nothing_listening_is_a_refusal():
    engine = PolicyEngine.opa(f"http://127.0.0.1:{free_loopback_port()}", timeout=0.5)
    decision = engine.decide(summary_request())
    assert not decision.allow and decision.reasons == [UNREACHABLE_REASON]


def test_a_server_without_the_policies_refuses(tmp_path):
    """An OPA with nothing published answers {} (undefined): that is a denial."""
    with OpaServer(tmp_path / "opa.log") as server:
        engine = PolicyEngine.opa(server.url)
        decision = engine.decide(summary_request())
        assert not decision.allow
        assert decision.reasons == ["The policy gave no decision, so the request is refused."]


def test_the_service_publishes_to_a_fresh_server(tmp_path: Path):
    """engine_from_settings with engine = "opa" publishes before its first decision, and again
    after OPA restarts without the policies."""
    with OpaServer(tmp_path / "a.log") as server:
        engine = engine_from_settings({"engine": "opa", "opa_url": server.url})
        assert engine.decide(summary_request()).allow
        port = server.port
    with OpaServer(tmp_path / "b.log", port=port):  # restarted: empty
        assert engine.decide(summary_request()).allow
        assert not engine.decide(summary_request(status="withdrawn")).allow
