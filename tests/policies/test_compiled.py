"""The compiled engine: the committed policies/compiled/ is OPA's build of the current
policies (a rebuild with OPA decides identically), a stale build is refused, data documents
come in at run time, and concurrent callers get the sequential answers."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from policies import PolicyEngine, PolicyError, engine_from_settings
from policies.bundle import DATA_DIR, POLICY_DIR, load_bundle
from policies.compiled import (
    COMPILED_DIR,
    CompiledPolicyError,
    build_wasm,
    load_compiled,
    sources_digest,
    write_compiled,
)
from policies.engine import EmbeddedEngine, normalise_input
from policies.opa_tool import opa_version
from policies.wasm_engine import WasmEngine
from tests.policies.test_equivalence import generate

NOW = "2026-11-22T10:00:00Z"
GOVERNANCE = {"id": "g1", "role": "governance", "organisation": "governance-board"}


def test_the_committed_build_is_of_the_current_policies():
    manifest = json.loads((COMPILED_DIR / "manifest.json").read_text())
    assert manifest["sources_sha256"] == sources_digest(load_bundle().modules), (
        "policies/*.rego changed since policies/compiled/ was built: run `python -m policies.compiled`")
    assert manifest["entrypoints"] == ["joinedup/authz/decision"]
    load_compiled(load_bundle())  # digest and module hash both check out


def test_a_rebuild_with_opa_decides_identically(tmp_path):
    """CI rebuilds the module with the pinned OPA and compares decisions, not bytes."""
    bundle = load_bundle()
    wasm = build_wasm(bundle)
    write_compiled(bundle, wasm, opa_version(), tmp_path)
    rebuilt = WasmEngine(bundle, load_compiled(bundle, tmp_path))
    committed = PolicyEngine.compiled()
    for request in generate(600, seed=8):
        prepared = normalise_input(request)
        assert rebuilt._evaluate(prepared) == committed._evaluate(prepared), request


def test_a_stale_build_is_refused_and_the_default_falls_back_to_regopy(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in POLICY_DIR.glob("*.rego"):
        shutil.copy(path, policies / path.name)
    authz = policies / "authz.rego"
    authz.write_text(authz.read_text().replace("default allow := false", "default allow := false\n"))
    with pytest.raises(CompiledPolicyError, match="other policy sources"):
        load_compiled(load_bundle(policies, DATA_DIR))
    with pytest.raises(PolicyError, match="python -m policies.compiled"):
        engine_from_settings({"engine": "wasm"}, policies, DATA_DIR)
    assert isinstance(engine_from_settings({"engine": "embedded"}, policies, DATA_DIR), EmbeddedEngine)


def test_a_tampered_module_is_refused(tmp_path):
    shutil.copytree(COMPILED_DIR, tmp_path / "compiled")
    wasm = tmp_path / "compiled" / "policy.wasm"
    wasm.write_bytes(wasm.read_bytes() + b"\0")
    with pytest.raises(CompiledPolicyError, match="does not match its manifest"):
        load_compiled(load_bundle(), tmp_path / "compiled")


def test_data_documents_are_loaded_at_run_time(tmp_path):
    """A deployment's own data (here a higher suppression threshold) needs no rebuild."""
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    doc = json.loads((data / "disclosure.json").read_text())
    doc["disclosure"]["suppression_threshold"] = 11
    (data / "disclosure.json").write_text(json.dumps(doc))
    engine = PolicyEngine.compiled(None, data)
    decision = engine.decide({"subject": GOVERNANCE, "action": "area_counts.read", "time": NOW})
    assert decision.allow and decision.obligations["suppression_threshold"] == 11
    assert engine.bundle_revision == load_bundle(None, data).revision != load_bundle().revision


def test_concurrent_decisions_match_sequential_ones():
    engine = PolicyEngine.compiled(workers=3)
    requests = generate(300, seed=12)
    expected = [(d.allow, d.reasons, d.obligations) for d in map(engine.decide, requests)]
    got: list = [None] * len(requests)
    start = threading.Barrier(4)

    def work(offset: int) -> None:
        start.wait()
        for i in range(offset, len(requests), 4):
            d = engine.decide(requests[i])
            got[i] = (d.allow, d.reasons, d.obligations)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected
    assert engine._made <= 3


def test_a_large_input_grows_the_modules_memory():
    engine = PolicyEngine.compiled(workers=1)
    request = {"subject": {"id": "u1", "role": "adviser", "organisation": "csc-margate"},
               "action": "summary.request", "purpose": "employment_support", "time": NOW,
               "resource": {"person_key": "p", "categories": ["MH", "HOU"]},
               "consent": {"status": "active", "purposes": ["employment_support"], "person_key": "p",
                           "categories": ["dwp", "HOU"], "expires_at": "2027-01-01T00:00:00Z",
                           "receipt_id": "r" * 3_000_000}}  # larger than the module's memory
    decision = engine.decide(request)
    assert decision.allow and decision.obligations["categories"] == ["HOU"]
    del request["consent"]["receipt_id"]
    assert engine.decide(request).obligations == decision.obligations


def test_no_compiled_policy_at_all(tmp_path: Path):
    with pytest.raises(CompiledPolicyError, match="no readable compiled policy"):
        load_compiled(load_bundle(), tmp_path)


def test_the_public_wasmtime_call_decides_the_same(monkeypatch):
    """The driver's fallback when wasmtime-py lacks the unchecked call."""
    fast = PolicyEngine.compiled(workers=1)
    monkeypatch.setattr("policies.wasm_engine._unchecked_call", lambda store, func: None)
    plain = PolicyEngine.compiled(workers=1)
    for engine, fast_call in ((plain, False), (fast, True)):
        instance = engine._take()
        assert (instance._fast_call is not None) is fast_call
        engine._idle.put(instance)
    for request in generate(200, seed=13):
        prepared = normalise_input(request)
        assert plain._evaluate(prepared) == fast._evaluate(prepared), request


def test_a_trapping_instance_is_replaced(monkeypatch):
    engine = PolicyEngine.compiled(workers=1)
    first = engine._take()
    engine._idle.put(first)

    def trap(raw: bytes):
        raise PolicyError("the compiled policy trapped: test")

    monkeypatch.setattr(first, "evaluate", trap)
    request = {"subject": GOVERNANCE, "action": "audit.verify", "time": NOW}
    with pytest.raises(PolicyError, match="trapped"):
        engine.decide(request)
    assert engine.decide(request).allow  # a fresh instance answered
    replacement = engine._take()
    assert replacement is not first
