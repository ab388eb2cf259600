"""Decision parity: OPA server, the compiled engine and regopy give the same decision document
(allow, reasons, obligations) for every request of a generated corpus of 10,000+.

OPA is the judge (a real `opa run --server` on loopback, through the adapter); the compiled
engine is OPA's own compiler output run by wasmtime; regopy is the engine that needs no build.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

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
    prepared_all = [normalise_input(r) for r in requests]  # once: a missing time is one "now"
    with OpaServer(tmp_path / "opa.log", decision_logs=False) as server:
        publisher = PolicyEngine.opa(server.url, timeout=10)
        publisher.publish()
        publisher.close()
        # OPA's answers are asked for by two threads, each with its own adapter (HTTP session),
        # while this thread runs the two in-process engines: the server evaluates while Python
        # works, instead of each waiting for the other. Every request is still asked of all three.
        local, adapters = threading.local(), []

        def ask_opa(prepared: dict) -> object:
            opa = getattr(local, "opa", None)
            if opa is None:
                local.opa = opa = PolicyEngine.opa(server.url, timeout=10)
                adapters.append(opa)
            return opa._evaluate(prepared)

        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = zip(prepared_all, pool.map(ask_opa, prepared_all), strict=True)
            for request, (prepared, by_opa) in zip(requests, answers, strict=True):
                by_wasm, by_regopy = compiled._evaluate(prepared), regopy._evaluate(prepared)
                if not canonical(by_opa) == canonical(by_wasm) == canonical(by_regopy):
                    differences.append((request, by_opa, by_wasm, by_regopy))
                if isinstance(by_opa, dict):
                    action = prepared.get("action")
                    outcomes[(action if isinstance(action, str) else "?", by_opa["allow"])] += 1
                    reasons.update(by_opa["reasons"])
        for opa in adapters:
            opa.close()
    assert not differences, f"{len(differences)} differences; first: {differences[:3]}"
    # The comparison proves little unless both outcomes, and many reasons, occur.
    allowed = sum(n for (_, allow), n in outcomes.items() if allow)
    assert 0.2 * len(requests) < allowed < 0.8 * len(requests), outcomes
    for action in ACTIONS:
        assert outcomes[(action, True)] > 0 and outcomes[(action, False)] > 0, action
    assert len(reasons) >= 25, reasons
