"""The embedded engine decides correctly when called from several threads at once.

Each thread borrows its own evaluator (a regopy interpreter and compiled bundle); regopy is
called through ctypes, which releases the GIL, so the threads really do overlap in C.
"""

from __future__ import annotations

import threading

from policies import PolicyEngine
from tests.policies.test_equivalence import generate


def test_concurrent_decisions_match_sequential_ones():
    engine = PolicyEngine.embedded(workers=3)
    requests = generate(300, seed=11)
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


def test_evaluators_are_made_on_demand_up_to_the_limit():
    engine = PolicyEngine.embedded(workers=2)
    first = engine._take_evaluator()
    second = engine._take_evaluator()  # the first is busy: a second one is made
    assert first is not second and first[1] is not second[1]
    engine._idle.put(first)
    assert engine._take_evaluator() is first  # idle ones are reused, none beyond the limit
    engine._idle.put(first)
    engine._idle.put(second)
    assert engine._made == 2
    assert engine.decide({"subject": {"id": "a", "role": "admin", "organisation": "joinedup-ops"},
                          "action": "users.manage", "time": "2026-11-22T10:00:00Z"}).allow
