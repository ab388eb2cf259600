"""Service benchmark: 20 concurrent clients POST /v1/summaries on loopback.

    .venv/bin/python bench/bench_service.py [--people 2000] [--clients 20] [--seconds 60]
                                            [--rate 200] [--workers 2]
    .venv/bin/python bench/bench_service.py --profile 300 --no-load   # in-process cost split

Builds a demo home (synthetic sources → extracts → ingest → link), grants consent for up
to 200 claimants, then:
1. profile: runs `--profile` summary requests in-process, one after another, and splits
   the time of a request into person scoring (linkage/score.py), encoding, consent lookup,
   policy decision, decryption, ledger append and the rest;
2. load: serves the API with `joinedup serve --workers N` in its own processes and drives
   it with bench/loadgen.py (one process, asyncio, one keep-alive connection per client,
   pre-encoded requests, so the load generator costs ~0.2 ms of CPU a request). Two phases
   of --seconds each:
   - closed loop: every client sends its next request as soon as it has an answer. The
     requests a second the server sustains; its latency is set by the queue (with 20
     clients, p50 ≈ 20 / throughput), so it says nothing about latency at a given load;
   - paced: the 20 clients together start --rate requests a second on a fixed schedule;
     latency counts from each request's scheduled start (a server that falls behind shows
     it as latency). This is the "p99 at 200 requests a second" figure.
   Prints requests/s, p50/p95/p99/max, errors, CPU per request (server processes and the
   load generator) and ledger entries written per request over both phases.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import encode_post, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL",
              "CAR", "CLV", "FAM", "WRK"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home_dir: Path, people: int) -> tuple[str, list[dict]]:
    """A linked demo home, an adviser token, and consenting people's raw identifiers."""
    from rich.console import Console

    from connectors.sources import read_records
    from joinedup import operations as ops
    from joinedup.demo import run_demo
    from joinedup.errors import CollationInputError
    from joinedup.home import load_home
    from joinedup.service_context import ServiceContext
    from joinedup.users import open_user_store

    t0 = time.monotonic()
    run_demo(home_dir, people=people, seed=11, force=True, console=Console(quiet=True))
    print(f"demo home built in {time.monotonic() - t0:.1f}s ({people} people)")
    home = load_home(home_dir)
    if not (home.runs_dir / "CURRENT").exists():
        raise SystemExit("not runnable: no link run")
    store = open_user_store(home)
    token = store.add("adviser", "csc-margate")[1]
    user = store.authenticate(token)
    ctx = ServiceContext(home)
    consenting = []
    for rec in read_records("dwp", str(home_dir / "sources" / "dwp_claimants.csv")):
        person = {k: v for k, v in rec.identity.items() if v and k != "local_id"}
        try:
            ops.grant_consent(ctx, user, ops.GrantConsent(person, ["employment_support"],
                                                          CATEGORIES))
        except CollationInputError:
            continue  # a planted data error (e.g. an impossible date of birth)
        consenting.append(person)
        if len(consenting) >= 200:
            break
    ctx.close()
    return token, consenting


def profile(home_dir: Path, token: str, people: list[dict], n: int) -> None:
    """Where the time of one summary request goes (in-process, sequential, no HTTP)."""
    import linkage.score
    from joinedup import collate
    from joinedup import operations as ops
    from joinedup.home import load_home
    from joinedup.service_context import ServiceContext
    from joinedup.users import open_user_store

    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    home = load_home(home_dir)
    ctx = ServiceContext(home)
    user = open_user_store(home).authenticate(token)
    for p in people[:5]:  # warm: run loaded, engine compiled, ciphertexts mapped
        ops.request_summary(ctx, user, ops.SummaryRequest(p))
    patches = [
        (linkage.score.RunScorer, "score", "person scoring (linkage/score.py)"),
        (collate, "encode_identity", "encode identity (connectors)"),
        (ctx.consent, "current", "consent lookup (consent)"),
        (ctx.policy, "decide", "policy decision (policies)"),
        (collate, "decrypt_content", "decrypt content rows"),
        (ctx.ledger, "append", "ledger append + fsync (audit)"),
    ]
    originals = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    for obj, attr, name in patches:
        setattr(obj, attr, timed(name, getattr(obj, attr)))
    outcomes: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    for i in range(n):
        request = ops.SummaryRequest(people[i % len(people)])
        outcomes[ops.request_summary(ctx, user, request).outcome] += 1
    total = time.perf_counter() - t0
    for obj, attr, fn in originals:
        setattr(obj, attr, fn)
    ctx.close()
    print(f"profile: {n} sequential in-process summary requests, {total / n * 1000:.2f} ms each "
          f"({n / total:.0f}/s on one thread); outcomes {dict(outcomes)}")
    rest = total - sum(spent.values())
    for name, seconds in sorted([*spent.items(), ("rest (collation, summary, glue)", rest)],
                                key=lambda kv: -kv[1]):
        print(f"  {name:38s} {seconds / n * 1000:7.2f} ms  {seconds / total:6.1%}")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    family, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    for member in family:
        total += stats.get(member, (0, 0.0))[1]
    return total


# Runs beside the load in its own process: how slow the disk's fsync and the scheduler were
# during a phase, so a latency outlier can be told apart from a stalled disk or a paused VM.
_WATCH = """
import os, sys, time
path, stop = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
worst_fsync = worst_gap = 0.0
while time.monotonic() < stop:
    os.write(fd, b"x" * 200 + b"\\n")
    t = time.monotonic(); os.fsync(fd); worst_fsync = max(worst_fsync, time.monotonic() - t)
    t = time.monotonic(); time.sleep(0.1); worst_gap = max(worst_gap, time.monotonic() - t - 0.1)
os.close(fd); os.remove(path)
print(f"{worst_fsync * 1000:.0f} {worst_gap * 1000:.0f}")
"""


def _watch(directory: Path, seconds: float) -> subprocess.Popen:
    stop = time.monotonic() + seconds
    return subprocess.Popen([sys.executable, "-c", _WATCH, str(directory / ".bench-watch"), str(stop)],
                            stdout=subprocess.PIPE, text=True)


def _report_watch(watch: subprocess.Popen) -> None:
    out, _ = watch.communicate(timeout=60)
    fsync_ms, gap_ms = (out.split() + ["?", "?"])[:2]
    print(f"  during the phase: slowest fsync on the home's disk {fsync_ms} ms; "
          f"longest pause of a 100 ms timer beyond its time {gap_ms} ms")


def _report(label: str, result, server_cpu: float, client_cpu: float) -> bool:
    ok = result.statuses.get(200, 0)
    print(f"{label}: clients={result.clients} seconds={result.wall:.1f} requests={result.count} "
          f"ok={ok} errors={result.count - ok} statuses={dict(result.statuses)} "
          f"outcomes={dict(result.outcomes)}")
    print(f"  throughput={result.count / result.wall:.1f} req/s  p50={result.percentile(50) * 1000:.1f} ms  "
          f"p95={result.percentile(95) * 1000:.1f} ms  p99={result.percentile(99) * 1000:.1f} ms  "
          f"max={max(result.latencies) * 1000:.1f} ms")
    print(f"  CPU per request: server {server_cpu / max(result.count, 1) * 1000:.2f} ms "
          f"({server_cpu / result.wall:.2f} cores), load generator "
          f"{client_cpu / max(result.count, 1) * 1000:.2f} ms ({client_cpu / result.wall:.2f} cores)"
          + (f"; slots started >10 ms late: {result.late_starts}" if result.rate else ""))
    print("  slowest (started at s: ms): " + ", ".join(
        f"{at:.1f}: {latency * 1000:.0f}" for at, latency in result.slowest()))
    return ok == result.count


def load(home_dir: Path, token: str, people: list[dict], clients: int, seconds: float,
         max_requests: int, rate: float, workers: int) -> int:
    """Serve the API in its own process(es); drive it closed-loop, then paced at `rate`."""
    from audit import Ledger
    from joinedup.home import load_home

    home = load_home(home_dir)
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "joinedup"), "serve", "--home", str(home_dir),
         "--port", str(port), "--no-access-log", "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    requests = [encode_post(f"127.0.0.1:{port}", "/v1/summaries", token,
                            {"identifiers": p, "purpose": "employment_support"}) for p in people]
    passed = True
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        # Warm every worker (run loaded, engine compiled, ciphertexts mapped): a short burst
        # from all clients, not counted.
        run_load("127.0.0.1", port, requests, clients=clients, seconds=3)
        with Ledger(home.ledger_dir) as ledger:
            before = ledger.size
        total = 0
        phases = [("closed loop (as fast as the server answers)", None)]
        if rate:
            phases.append((f"paced at {rate:g} requests/s", rate))
        for label, phase_rate in phases:
            server_cpu0, client_cpu0 = _tree_cpu_seconds(server.pid), time.process_time()
            watch = _watch(home_dir, seconds)
            result = run_load("127.0.0.1", port, requests, clients=clients, seconds=seconds,
                              rate=phase_rate, max_requests=max_requests)
            server_cpu = _tree_cpu_seconds(server.pid) - server_cpu0
            result.clients, result.rate = clients, phase_rate
            passed &= _report(label, result, server_cpu, time.process_time() - client_cpu0)
            _report_watch(watch)
            total += result.count
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Ledger(home.ledger_dir) as ledger:
        after = ledger.size
    print(f"ledger entries written={after - before} for {total} requests "
          f"(per request={(after - before) / max(total, 1):.3f}); server workers={workers}")
    return 0 if passed and after - before == total else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=200,
                    help="requests/s for the paced phase (0: closed loop only)")
    ap.add_argument("--workers", type=int, default=None,
                    help="server worker processes (default: joinedup serve's, one per core, at most 4)")
    ap.add_argument("--profile", type=int, default=300, help="in-process requests to profile")
    ap.add_argument("--no-load", action="store_true", help="profile only")
    ap.add_argument("--home", type=Path, default=ROOT / "bench" / "out" / "service-home")
    args = ap.parse_args()

    token, people = prepare(args.home, args.people)
    if args.profile:
        profile(args.home, token, people, args.profile)
    if args.no_load:
        return 0
    from joinedup.serving import default_workers

    return load(args.home, token, people, args.clients, args.seconds, args.max_requests,
                args.rate, args.workers or default_workers())


if __name__ == "__main__":
    sys.exit(main())
