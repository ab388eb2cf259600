"""Service benchmark: N concurrent clients POST /v1/summaries for D seconds on loopback.

    .venv/bin/python bench/bench_service.py [--people 2000] [--clients 20] [--seconds 60]

Builds a demo home (synthetic sources → extracts → ingest → link), grants consent for a
set of people, serves the API with uvicorn in a separate process (`joinedup serve`), and
drives it with threads each holding one keep-alive httpx client. Prints requests/s, p50,
p95, p99, errors, and ledger entries written per request. Bounded in time and count.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--home", type=Path, default=ROOT / "bench" / "out" / "service-home")
    args = ap.parse_args()

    from rich.console import Console

    from connectors.sources import read_records
    from joinedup.demo import run_demo
    from joinedup.home import load_home
    from joinedup.service_context import ServiceContext
    from joinedup.users import open_user_store

    state = run_demo(args.home, people=args.people, seed=11, force=True, console=Console(quiet=True))
    home = load_home(args.home)
    if not (home.runs_dir / "CURRENT").exists():
        print("not runnable yet: no link run (linkage not available)")
        return 2
    store = open_user_store(home)
    adviser = store.add("adviser", "csc-margate")[1]
    people = []
    for rec in read_records("dwp", str(args.home / "sources" / "dwp_claimants.csv")):
        people.append({k: v for k, v in rec.identity.items() if v and k != "local_id"})
        if len(people) >= 200:
            break
    ctx = ServiceContext(home)
    user = store.authenticate(adviser)
    cats = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL",
            "CAR", "CLV", "FAM", "WRK"]
    for p in people:
        ctx.grant_consent(user, p, ["employment_support"], cats)
    before = ctx.ledger.size
    ctx.close()
    del state

    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "joinedup"), "serve", "--home", str(args.home),
         "--port", str(port), "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        count = [0]

        def client(i: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {adviser}"},
                              timeout=10) as c:
                n = i
                while time.monotonic() < stop_at:
                    with lock:
                        if count[0] >= args.max_requests:
                            return
                        count[0] += 1
                    body = {"identifiers": people[n % len(people)], "purpose": "employment_support"}
                    t0 = time.perf_counter()
                    try:
                        status = c.post("/v1/summaries", json=body).status_code
                    except httpx.HTTPError:
                        status = -1
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        statuses[status] = statuses.get(status, 0) + 1
                    n += args.clients

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    from audit import Ledger

    with Ledger(home.ledger_dir) as ledger:
        after = ledger.size
    total = len(latencies)
    q = statistics.quantiles(latencies, n=100) if total >= 100 else [max(latencies)] * 99
    ok = statuses.get(200, 0)
    print(f"clients={args.clients} seconds={wall:.1f} requests={total} ok={ok} "
          f"errors={total - ok} statuses={statuses}")
    print(f"throughput={total / wall:.1f} req/s  p50={q[49] * 1000:.1f} ms  "
          f"p95={q[94] * 1000:.1f} ms  p99={q[98] * 1000:.1f} ms")
    print(f"ledger entries written={after - before}  per request={(after - before) / max(total, 1):.3f}")
    return 0 if ok == total else 1


if __name__ == "__main__":
    sys.exit(main())
