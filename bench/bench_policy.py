"""Policy decision throughput: the embedded engine (regopy bundle) and the OPA adapter's
overhead against a local stand-in of OPA's REST API (no OPA binary can be installed here; the
stand-in evaluates with regopy, so the figure is the adapter's HTTP + JSON overhead).

Besides wall-clock rates it prints CPU time per decision (the machine is shared, so wall
figures move with other people's load), where the time goes (input conversion, query,
output), the same requests through the reference policies (tests/policies/reference, the
policies before the indexed fast path) and a trivial one-line policy as the engine's floor.

Run: .venv/bin/python bench/bench_policy.py [--n 3000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import PolicyEngine  # noqa: E402
from policies.engine import _decision_from, _first_expression, normalise_input, rego_input_from  # noqa: E402

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "policies" / "reference"

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


def run_embedded(n: int, engine=None) -> tuple[float, float, int]:
    """(decisions/s by the wall clock, CPU seconds per decision, allowed) for one thread."""
    engine = engine or PolicyEngine.embedded()
    inputs = make_inputs(n)
    engine.decide(inputs[0])
    start, cpu = time.perf_counter(), time.process_time()
    allowed = sum(engine.decide(x).allow for x in inputs)
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n, allowed


def run_threads(n: int, threads: int) -> float:
    """One engine shared by several threads (each borrows its own evaluator)."""
    engine = PolicyEngine.embedded(workers=threads)
    inputs = make_inputs(n * threads)
    gate = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        engine.decide(inputs[k])  # make this thread's evaluator before the clock starts
        gate.wait()
        for x in inputs[k::threads]:
            engine.decide(x)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return n * threads / (time.perf_counter() - start)


def _worker(n: int, queue) -> None:
    queue.put(run_embedded(n)[0])


def in_processes(target, args: tuple, workers: int) -> float:
    """Run target(*args, queue) in `workers` processes at once; the sum of the rates they put."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    procs = [context.Process(target=target, args=(*args, queue)) for _ in range(workers)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def run_processes(n: int, workers: int) -> float:
    return in_processes(_worker, (n,), workers)


def time_pieces(n: int) -> dict[str, float]:
    """CPU microseconds per decision spent in each step of EmbeddedEngine.decide."""
    from regopy.rego_shared import rego, rego_output_string

    engine = PolicyEngine.embedded()
    interpreter, compiled = engine._take_evaluator()
    entry = engine._entrypoint
    totals = dict.fromkeys(("normalise", "input conversion", "query", "output", "decision object"), 0.0)
    clock = time.process_time
    for x in make_inputs(n):
        t0 = clock()
        prepared = normalise_input(x)
        t1 = clock()
        handle = rego_input_from(prepared)
        rego.regoSetInput(interpreter._impl, handle)
        rego.regoFreeInput(handle)
        t2 = clock()
        out = rego.regoBundleQueryEntrypoint(interpreter._impl, compiled._impl, entry)
        t3 = clock()
        raw = _first_expression(rego_output_string(out))
        rego.regoFreeOutput(out)
        t4 = clock()
        _decision_from(raw, prepared, engine.bundle_revision)
        t5 = clock()
        for key, a, b in zip(totals, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
            totals[key] += b - a
    return {k: v / n * 1e6 for k, v in totals.items()}


def trivial_policy_floor(n: int) -> float:
    """CPU microseconds for a bundle query of a one-line policy (`x := input.action`)."""
    import regopy
    from regopy.rego_shared import rego, rego_output_string

    build = regopy.Interpreter()
    build.add_module("floor.rego", "package floor\n\nx := input.action\n")
    compiled = build.build(None, ["floor/x"])
    runner = regopy.Interpreter()
    runner.set_input(normalise_input(make_inputs(1)[0]))
    start = time.process_time()
    for _ in range(n):
        out = rego.regoBundleQueryEntrypoint(runner._impl, compiled._impl, b"floor/x")
        json.loads(rego_output_string(out))
        rego.regoFreeOutput(out)
    return (time.process_time() - start) / n * 1e6


# The least a decision could be in regopy: only the checks an allowed summary request must
# pass, in one flat rule over the same data (no reasons for a refusal, no withheld
# categories, no other action). Not a policy anyone should ship; a floor for the engine.
FLAT_ALLOW_ONLY = """package flat

x := {"allow": true, "obligations": {"categories": sort(object.keys(cats)), "sources": sort(object.keys(srcs))}} if {
	data.indexes.grants[input.subject.role][input.action][input.subject.organisation][input.purpose]
	is_string(input.subject.id)
	count(input.time) == 20
	is_string(input.resource.person_key)
	input.consent.status == "active"
	input.consent.expires_at > input.time
	input.purpose in input.consent.purposes
	input.consent.person_key == input.resource.person_key
	date := substring(input.time, 0, 10)
	some id, span in data.indexes.agreements_for[input.subject.organisation][input.purpose]
	span[0] <= date
	date <= span[1]
	a := data.indexes.agreements[id]
	cats := object.filter(object.filter(a.categories, input.resource.categories), input.consent.categories)
	srcs := object.filter(a.sources, input.consent.categories)
}
"""


def _flat_floor_worker(rounds: int, queue) -> None:
    """Allowed summary requests through FLAT_ALLOW_ONLY: input conversion + query + output,
    no Python glue. Puts queries per second (wall) on the queue."""
    import regopy
    from regopy.rego_shared import rego, rego_output_string

    from policies.bundle import load_bundle

    build = regopy.Interpreter()
    build.add_data(load_bundle().data)
    build.add_module("flat.rego", FLAT_ALLOW_ONLY)
    compiled = build.build(None, ["flat/x"])
    runner = regopy.Interpreter()
    inputs = [normalise_input(x) for x in make_inputs(800)
              if x["action"] == "summary.request" and x["consent"]["status"] == "active"]
    start = time.perf_counter()
    for _ in range(rounds):
        for x in inputs:
            handle = rego_input_from(x)
            rego.regoSetInput(runner._impl, handle)
            rego.regoFreeInput(handle)
            out = rego.regoBundleQueryEntrypoint(runner._impl, compiled._impl, b"flat/x")
            if '"allow":true' not in rego_output_string(out).replace(" ", ""):
                raise AssertionError("the flat rule should allow these requests")
            rego.regoFreeOutput(out)
    queue.put(rounds * len(inputs) / (time.perf_counter() - start))


def flat_floor(processes: int, rounds: int = 8) -> float:
    return in_processes(_flat_floor_worker, (rounds,), processes)


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
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rate, cpu, allowed = run_embedded(args.n)
    print(f"embedded, 1 process, 1 thread: {rate:,.0f} decisions/s ({1000 / rate:.3f} ms each; "
          f"{cpu * 1e6:.0f} us CPU each = {1 / cpu:,.0f}/s per CPU-second; {allowed}/{args.n} allowed)")
    ref_rate, ref_cpu, _ = run_embedded(args.n, PolicyEngine.embedded(REFERENCE_DIR, REFERENCE_DIR.parents[2] / "policies" / "data"))
    print(f"  same requests, reference policies (before the fast path): {ref_rate:,.0f} decisions/s "
          f"({ref_cpu * 1e6:.0f} us CPU each)")
    pieces = time_pieces(min(args.n, 2000))
    print("  CPU per decision by step: " + ", ".join(f"{k} {v:.0f} us" for k, v in pieces.items()))
    print(f"  floor: a one-line policy's bundle query costs {trivial_policy_floor(2000):.0f} us CPU")
    print(f"  floor: a flat allow-only rule (15 checks, no reasons), input included: "
          f"{flat_floor(1):,.0f}/s on 1 process, {flat_floor(2):,.0f}/s on 2 processes")
    threads = run_threads(args.n // 2, 2)
    print(f"embedded, 1 process, 2 threads sharing one engine: {threads:,.0f} decisions/s in total")
    both = run_processes(args.n, 2)
    print(f"embedded, 2 processes: {both:,.0f} decisions/s in total")
    opa_n = max(200, args.n // 10)
    opa = run_opa(opa_n)
    print(f"OPA adapter vs local stand-in: {opa:,.0f} decisions/s ({1000 / opa:.3f} ms each; "
          f"overhead over embedded {1000 / opa - 1000 / rate:.3f} ms per decision)")


if __name__ == "__main__":
    main()
