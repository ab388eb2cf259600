"""Decision parity: OPA server, the compiled engine and regopy give the same decision document
(allow, reasons, obligations) for every request of a generated corpus of 10,000+.

OPA is the judge (a real `opa run --server` on loopback, through the adapter); the compiled
engine is OPA's own compiler output run by wasmtime; regopy is the engine that needs no build.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from policies import PolicyEngine
from policies.engine import normalise_input
from policies.opa_tool import OpaServer
from tests.policies.corpus import (
    ACTIONS,
    CATEGORY_MIXES,
    CONSENT_STATES,
    ORGANISATIONS,
    PURPOSES,
    ROLES,
    TIMES,
    coverage,
    generate_corpus,
)


def canonical(raw) -> str:
    return json.dumps(raw, sort_keys=True)


def test_the_corpus_covers_every_dimension():
    requests, used = generate_corpus(10_000)
    assert len(requests) >= 10_000
    seen = coverage(used)
    assert set(ROLES) <= seen["role"]
    assert set(ORGANISATIONS) <= seen["organisation"]
    assert set(ACTIONS) <= seen["action"]
    assert set(PURPOSES) | {None} <= seen["purpose"]
    assert set(CONSENT_STATES) == seen["consent"]
    assert set(TIMES) == seen["time"]
    assert {repr(m) for m in CATEGORY_MIXES} == seen["categories"]
    # every role with every organisation
    pairs = {(u["role"], u["organisation"]) for u in used}
    assert {(r, o) for r in ROLES for o in ORGANISATIONS} <= pairs


@pytest.mark.slow
def test_opa_server_compiled_engine_and_regopy_agree(tmp_path):
    requests, _ = generate_corpus(10_000)
    regopy, compiled = PolicyEngine.embedded(), PolicyEngine.compiled()
    differences, outcomes, reasons = [], Counter(), Counter()
    with OpaServer(tmp_path / "opa.log", decision_logs=False) as server:
        opa = PolicyEngine.opa(server.url, timeout=10)
        opa.publish()
        for request in requests:
            prepared = normalise_input(request)  # once, so a missing time is the same "now"
            by_opa = opa._evaluate(prepared)
            by_wasm, by_regopy = compiled._evaluate(prepared), regopy._evaluate(prepared)
            if not canonical(by_opa) == canonical(by_wasm) == canonical(by_regopy):
                differences.append((request, by_opa, by_wasm, by_regopy))
            if isinstance(by_opa, dict):
                outcomes[(prepared.get("action") if isinstance(prepared.get("action"), str) else "?",
                          by_opa["allow"])] += 1
                reasons.update(by_opa["reasons"])
        opa.close()
    assert not differences, f"{len(differences)} differences; first: {differences[:3]}"
    # The comparison proves little unless both outcomes, and many reasons, occur.
    allowed = sum(n for (_, allow), n in outcomes.items() if allow)
    assert 0.2 * len(requests) < allowed < 0.8 * len(requests), outcomes
    for action in ACTIONS:
        assert outcomes[(action, True)] > 0 and outcomes[(action, False)] > 0, action
    assert len(reasons) >= 25, reasons
