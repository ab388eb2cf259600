"""Policy decision throughput: the embedded engine (regopy bundle) and the OPA adapter's
overhead against a local stand-in of OPA's REST API (no OPA binary can be installed here; the
stand-in evaluates with regopy, so the figure is the adapter's HTTP + JSON overhead).

Run: .venv/bin/python bench/bench_policy.py [--n 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import PolicyEngine  # noqa: E402

ADVISER = {"id": "u1", "role": "adviser", "organisation": "csc-margate"}


def make_inputs(n: int) -> list[dict]:
    """Varied, distinct requests: summaries with and without consent, referrals, counts."""
    out = []
    for i in range(n):
        person = secrets.token_hex(32)
        consent = {"status": ["active", "active", "withdrawn", "expired", "none"][i % 5],
                   "purposes": ["employment_support"], "categories": ["dwp", "nhs", "MH", "HOU", "FIN"],
                   "receipt_id": secrets.token_hex(16), "expires_at": "2027-06-01T00:00:00Z",
                   "person_key": person}
        kind = i % 4
        if kind in (0, 1):
            req = {"subject": ADVISER, "action": "summary.request", "purpose": "employment_support",
                   "resource": {"person_key": person, "categories": ["MH", "SUB", "HOU"]}, "consent": consent}
        elif kind == 2:
            req = {"subject": {"id": "p", "role": "provider", "organisation": "provider-a"},
                   "action": "referral.read", "purpose": "employment_support",
                   "resource": {"person_key": person, "categories": ["HOU"], "referred_to": ["provider-a"]},
                   "consent": consent}
        else:
            req = {"subject": {"id": "g", "role": "governance", "organisation": "governance-board"},
                   "action": "area_counts.read"}
        req["time"] = f"2026-11-{1 + i % 28:02d}T10:00:00Z"
        out.append(req)
    return out


def run_embedded(n: int) -> tuple[float, int]:
    engine = PolicyEngine.embedded()
    inputs = make_inputs(n)
    engine.decide(inputs[0])
    start = time.perf_counter()
    allowed = sum(engine.decide(x).allow for x in inputs)
    return n / (time.perf_counter() - start), allowed


def _worker(n: int, queue) -> None:
    queue.put(run_embedded(n)[0])


def run_processes(n: int, workers: int) -> float:
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_worker, args=(n, queue)) for _ in range(workers)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def run_opa(n: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "policies"))
    from test_engine import _OpaStandIn  # the same stand-in the tests use

    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpaStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = PolicyEngine.opa(f"http://127.0.0.1:{server.server_address[1]}")
        engine.publish()
        inputs = make_inputs(n)
        engine.decide(inputs[0])
        start = time.perf_counter()
        for x in inputs:
            engine.decide(x)
        return n / (time.perf_counter() - start)
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    rate, allowed = run_embedded(args.n)
    print(f"embedded, 1 process: {rate:,.0f} decisions/s ({1000 / rate:.3f} ms each; {allowed}/{args.n} allowed)")
    both = run_processes(args.n, 2)
    print(f"embedded, 2 processes: {both:,.0f} decisions/s in total")
    opa_n = max(200, args.n // 10)
    opa = run_opa(opa_n)
    print(f"OPA adapter vs local stand-in: {opa:,.0f} decisions/s ({1000 / opa:.3f} ms each; "
          f"overhead over embedded {1000 / opa - 1000 / rate:.3f} ms per decision)")


if __name__ == "__main__":
    main()
