"""Policy decisions per second and CPU per decision, engine by engine, in one run:

- regopy (the engine that needs no build; the baseline of every ratio below);
- the compiled engine (policies/compiled/: OPA-built WebAssembly run by wasmtime; the
  default, `[policy] engine = "embedded"`);
- the same module run by opa-py-wasm (the maintained OPA Wasm SDK on wasmtime), if installed:
  the other runtime the compiled engine was chosen against;
- an OPA server (`opa run --server` on loopback, built by scripts/opa.sh) through the adapter.

Each engine decides the same distinct requests (summaries with and without consent,
referrals, area counts) on one process, then on two processes at once (both cores). CPU per
decision is the process's user + system time (for the OPA server: the client's and the
server's together), so it holds on a shared machine where wall-clock rates move with other
people's load. Then the summary API (`POST /v1/summaries`, bench/bench_service.py's home,
server and load generator) is driven closed-loop with the default engine and with regopy.

Run: .venv/bin/python bench/bench_policy.py [--n 4000] [--service-seconds 20] [--no-service]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from policies import PolicyEngine  # noqa: E402
from policies.engine import normalise_input  # noqa: E402

ADVISER = {"id": "u1", "role": "adviser", "organisation": "csc-margate"}
BAR, GOAL = 5_000, 20_000  # decisions/s on 2 cores with the default engine (issue 14)


def make_inputs(n: int, seed: int = 0) -> list[dict]:
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


# --- engines -------------------------------------------------------------------------------

class OpaPyWasmEngine(PolicyEngine):
    """The committed module through opa-py-wasm (for comparison only; not a dependency)."""

    def __init__(self) -> None:
        from opapywasm import OpaWasmPolicy, PolicyConfig

        from policies.bundle import DECISION_PATH, load_bundle
        from policies.compiled import load_compiled

        bundle = load_bundle()
        self.bundle_revision = bundle.revision
        self._policy = OpaWasmPolicy.from_wasm_bytes(
            load_compiled(bundle).wasm,
            PolicyConfig(pool_size=1, default_entrypoint=DECISION_PATH, eval_timeout_seconds=None))
        self._policy.set_data(bundle.data)

    def _evaluate(self, prepared: dict) -> object:
        result = self._policy.evaluate(prepared)
        return result if isinstance(result, dict) else None


def make_engine(name: str, opa_url: str | None = None) -> PolicyEngine:
    if name == "regopy":
        return PolicyEngine.embedded(workers=1)
    if name == "compiled":
        return PolicyEngine.compiled(workers=1)
    if name == "opa-py-wasm":
        return OpaPyWasmEngine()
    if name == "opa-server":
        return PolicyEngine.opa(opa_url, timeout=10)
    raise ValueError(name)


def one_process(name: str, n: int, opa_url: str | None = None, seed: int = 0) -> dict:
    """Decide n requests one after another: decisions/s (wall), CPU seconds, allowed."""
    engine = make_engine(name, opa_url)
    inputs = make_inputs(n, seed)
    for x in inputs[:50]:  # warm up (first instance, connection, caches)
        engine.decide(x)
    start, cpu = time.perf_counter(), time.process_time()
    allowed = sum(engine.decide(x).allow for x in inputs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"rate": n / wall, "cpu": cpu, "wall": wall, "allowed": allowed}


def _child(name: str, n: int, opa_url: str | None, seed: int, gate, queue) -> None:
    engine = make_engine(name, opa_url)
    inputs = make_inputs(n, seed)
    for x in inputs[:50]:
        engine.decide(x)
    gate.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for x in inputs:
        engine.decide(x)
    queue.put((start, time.perf_counter(), time.process_time() - cpu))


def two_processes(name: str, n: int, opa_url: str | None = None) -> tuple[float, float]:
    """Two processes deciding at once (each its own engine): total decisions/s over the span
    from the first start to the last end, and the CPU microseconds a decision took in them."""
    context = multiprocessing.get_context("spawn")
    gate, queue = context.Barrier(2), context.Queue()
    procs = [context.Process(target=_child, args=(name, n, opa_url, k, gate, queue)) for k in range(2)]
    for p in procs:
        p.start()
    spans = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    rate = 2 * n / (max(e for _, e, _ in spans) - min(s for s, _, _ in spans))
    return rate, sum(c for _, _, c in spans) / (2 * n) * 1e6


def check_parity(n: int, names: list[str], opa_url: str | None) -> int:
    """Differences in (allow, reasons, obligations) against regopy over n requests."""
    engines = {name: make_engine(name, opa_url) for name in names}
    differences = 0
    for x in make_inputs(n, seed=99):
        prepared = normalise_input(x)
        answers = {json.dumps(e._evaluate(prepared), sort_keys=True) for e in engines.values()}
        differences += len(answers) > 1
    return differences


# --- the summary API ---------------------------------------------------------------------

def set_engine(home_dir: Path, engine: str) -> None:
    import tomllib

    import tomli_w

    path = home_dir / "joinedup.toml"
    settings = tomllib.loads(path.read_text())
    settings.setdefault("policy", {})["engine"] = engine
    path.write_text(tomli_w.dumps(settings))


def service_throughput(home_dir: Path, token: str, people: list[dict], engine: str,
                       seconds: float, clients: int = 20, workers: int = 2) -> dict:
    """Closed-loop POST /v1/summaries against `joinedup serve` with this engine."""
    import subprocess

    import httpx
    from bench_service import _tree_cpu_seconds, free_port
    from loadgen import encode_post, run_load

    set_engine(home_dir, engine)
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "joinedup"), "serve", "--home", str(home_dir), "--port", str(port),
         "--no-access-log", "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    requests = [encode_post(f"127.0.0.1:{port}", "/v1/summaries", token,
                            {"identifiers": p, "purpose": "employment_support"}) for p in people]
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        run_load("127.0.0.1", port, requests, clients=clients, seconds=3)  # warm every worker
        cpu0 = _tree_cpu_seconds(server.pid)
        result = run_load("127.0.0.1", port, requests, clients=clients, seconds=seconds)
        cpu = _tree_cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = result.statuses.get(200, 0)
    return {"rate": result.count / result.wall, "ok": ok, "count": result.count,
            "cpu_ms": cpu / max(result.count, 1) * 1000, "p50": result.percentile(50) * 1000,
            "outcomes": dict(result.outcomes)}


# --- main --------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000, help="decisions per process per engine")
    parser.add_argument("--opa-n", type=int, default=2000, help="decisions per process for the OPA server")
    parser.add_argument("--service-seconds", type=float, default=20)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--home", type=Path, default=ROOT / "bench" / "out" / "policy-service-home")
    args = parser.parse_args()

    from policies.opa_tool import OpaServer, opa_version

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"OPA {opa_version()}")
    names = ["regopy", "compiled"]
    try:
        import opapywasm  # noqa: F401

        names.append("opa-py-wasm")
    except ImportError:
        print("opa-py-wasm: not installed (pip install opa-py-wasm to compare it)")
    rows: dict[str, dict] = {}
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    with OpaServer(out_dir / "bench-opa.log", decision_logs=False) as server:
        setup = PolicyEngine.opa(server.url)
        setup.publish()
        differences = check_parity(1000, names + ["opa-server"], server.url)
        print(f"parity check: {differences} differences in allow/reasons/obligations over 1,000 requests "
              f"between {', '.join(names + ['opa-server'])}")
        for name in names + ["opa-server"]:
            n = args.opa_n if name == "opa-server" else args.n
            opa_cpu0 = _process_cpu(server.process.pid) if name == "opa-server" else 0.0
            one = one_process(name, n, server.url)
            if name == "opa-server":  # the server's CPU is part of each decision's cost
                one["cpu"] += _process_cpu(server.process.pid) - opa_cpu0
            both, both_cpu = two_processes(name, n, server.url)
            rows[name] = {"one": one["rate"], "cpu_us": one["cpu"] / n * 1e6, "two": both,
                          "allowed": f"{one['allowed']}/{n}"}
            print(f"{name:12s} 1 process: {one['rate']:8,.0f} decisions/s, {rows[name]['cpu_us']:6.0f} us CPU each "
                  f"({one['allowed']}/{n} allowed); 2 processes: {both:8,.0f} decisions/s "
                  f"({both_cpu:.0f} us CPU each in the clients"
                  f"{'; plus the server' if name == 'opa-server' else ''})")
    base = rows["regopy"]
    print("\nengine        2 cores (decisions/s)  x regopy   CPU us/decision  x regopy (less CPU)")
    for name, row in rows.items():
        print(f"{name:12s}  {row['two']:20,.0f}  {row['two'] / base['two']:7.1f}x  {row['cpu_us']:15.0f}  "
              f"{base['cpu_us'] / row['cpu_us']:7.1f}x")
    default = rows["compiled"]["two"]
    print(f"default engine (compiled) on 2 cores: {default:,.0f} decisions/s: bar {BAR:,} "
          f"{'met' if default >= BAR else 'NOT met'}, goal {GOAL:,} {'met' if default >= GOAL else 'not met'}")
    if args.no_service:
        return 0 if differences == 0 else 1

    from bench_service import prepare

    token, people = prepare(args.home, args.people)
    service = {}
    for engine in ("embedded", "regopy"):
        service[engine] = service_throughput(args.home, token, people, engine, args.service_seconds)
        s = service[engine]
        print(f"summary API, engine={engine}: {s['rate']:,.1f} requests/s closed loop (20 clients, 2 workers), "
              f"{s['ok']}/{s['count']} ok, server CPU {s['cpu_ms']:.2f} ms/request, p50 {s['p50']:.1f} ms, "
              f"outcomes {s['outcomes']}")
    print(f"summary API: default engine / regopy = {service['embedded']['rate'] / service['regopy']['rate']:.2f}x "
          f"requests/s, {service['regopy']['cpu_ms'] / service['embedded']['cpu_ms']:.2f}x less server CPU a request")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = all(s["ok"] == s["count"] for s in service.values())
    return 0 if differences == 0 and ok else 1


def _process_cpu(pid: int) -> float:
    from bench_service import _tree_cpu_seconds

    return _tree_cpu_seconds(pid)


if __name__ == "__main__":
    sys.exit(main())
