"""Web pages benchmark: 20 simulated users, each signed in with their own session, loading
pages from `joinedup serve` (default workers: one per core) on loopback.

    .venv/bin/python bench/bench_pages.py [--people 1000] [--users 20] [--seconds 10]
                                          [--rate 20]

Builds a demo home, grants consent for 40 claimants and refers 20 of them to provider-a;
signs in 20 users through the real sign-in form (advisers, provider caseworkers,
governance board members, data officers) and, for each adviser, finds a person (so the
session holds the person in front of them). Then, per page, two phases with the bench's
load generator (bench/loadgen.py: keep-alive connections, pre-encoded requests with each
user's session cookie):

- paced: the 20 users together load --rate pages a second (one page a second each: a
  fast human), latency counted from each request's scheduled start;
- closed loop: every user asks for the next page the moment the last one arrives (no
  think time at all: the worst case, its latency is the queue).

Baselines in the same run: the API route the page's operation also serves (POST
/v1/summaries for the barrier summary page, GET /v1/referrals for the provider's inbox),
with the same users and pacing, and the status page `/` (no operation). Prints p50/p95/p99
per page, the ratio of each page's p95 to its API baseline, and exits non-zero when any
page's paced p95 is 100 ms or more, or a request fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import encode_post, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL",
              "CAR", "CLV", "FAM", "WRK"]
# role -> how many of the simulated users
MIX = {"adviser": 8, "provider": 6, "governance": 4, "data_officer": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home_dir: Path, people: int) -> tuple[dict[str, list[str]], list[dict], list[str]]:
    """A linked demo home; tokens per role; consenting people; referral ids to provider-a."""
    from rich.console import Console

    from connectors.sources import read_records
    from joinedup import operations as ops
    from joinedup.demo import run_demo
    from joinedup.errors import OperationError
    from joinedup.home import load_home
    from joinedup.users import open_user_store

    t0 = time.monotonic()
    run_demo(home_dir, people=people, seed=11, force=True, console=Console(quiet=True))
    print(f"demo home built in {time.monotonic() - t0:.1f}s ({people} people)")
    home = load_home(home_dir)
    store = open_user_store(home)
    orgs = {"adviser": "csc-margate", "provider": "provider-a", "governance": "governance-board",
            "data_officer": "linkage-unit"}
    tokens = {role: [store.add(role, orgs[role])[1] for _ in range(n)] for role, n in MIX.items()}
    ctx = ops.open_service(home)
    adviser = store.authenticate(tokens["adviser"][0])
    consenting, referrals = [], []
    for rec in read_records("dwp", str(home_dir / "sources" / "dwp_claimants.csv")):
        person = {k: v for k, v in rec.identity.items() if v and k != "local_id"}
        try:
            ops.grant_consent(ctx, adviser, ops.GrantConsent(person, ["employment_support"],
                                                             CATEGORIES))
            result = ops.request_summary(ctx, adviser, ops.SummaryRequest(person))
        except OperationError:
            continue  # a planted data error (e.g. an impossible date of birth)
        if result.outcome != "matched" or not result.summary["barriers"]:
            continue
        consenting.append(person)
        if len(referrals) < 20:
            codes = [b["code"] for b in result.summary["barriers"]][:2]
            referrals.append(ops.create_referral(ctx, adviser, ops.CreateReferral(
                person, "provider-a", codes)).referral_id)
        if len(consenting) >= 40:
            break
    ctx.close()
    return tokens, consenting, referrals


FORM_FIELDS = ("given_name", "family_name", "date_of_birth", "postcode", "nino", "nhs_number")


def sign_in(url: str, token: str, person: dict | None) -> str:
    """Sign in through the form (and, for an adviser, find a person); the session cookie."""
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as client:
        page = client.get("/sign-in")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        page = client.post("/sign-in", data={"csrf_token": csrf, "token": token, "next": ""})
        if person is not None:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            found = client.post("/adviser/find", data={
                "csrf_token": csrf, **{k: person[k] for k in FORM_FIELDS if person.get(k)}})
            assert "Barrier summary" in found.text, found.text[:300]
        return client.cookies["joinedup_session"]


def encode_get(host: str, path: str, cookie: str | None = None, token: str | None = None) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    if cookie:
        head += f"Cookie: joinedup_session={cookie}\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return (head + "\r\n").encode()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--workers", type=int, default=None,
                        help="server workers (default: `joinedup serve`'s own default)")
    args = parser.parse_args()
    if args.users != sum(MIX.values()):
        raise SystemExit(f"--users must be {sum(MIX.values())} (the role mix)")
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    home_dir = work / "home"
    tokens, people, referrals = prepare(home_dir, args.people)
    port = free_port()
    command = [str(ROOT / ".venv" / "bin" / "joinedup"), "serve", "--home", str(home_dir),
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A SIGTERM (a timeout) still stops the server and removes the home.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url, host = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"
    failed = False
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        sessions = {role: [sign_in(url, t, people[i] if role == "adviser" else None)
                           for i, t in enumerate(ts)] for role, ts in tokens.items()}
        # Each target: (name, role, per-user request builder). Requests are laid out so
        # that user i of the role sends entries i, i + users, ... (loadgen's order).

        def page(path_of):
            return lambda role, i: encode_get(host, path_of(i), cookie=sessions[role][i])

        targets = [
            ("adviser: barrier summary page", "adviser", page(lambda i: "/adviser/person")),
            ("  baseline API POST /v1/summaries", "adviser",
             lambda role, i: encode_post(host, "/v1/summaries", tokens[role][i],
                                         {"identifiers": people[i]})),
            ("adviser: caseload page", "adviser", page(lambda i: "/adviser/caseload")),
            ("adviser: consent history page", "adviser", page(lambda i: "/adviser/consent/history")),
            ("provider: inbox page", "provider", page(lambda i: "/provider/referrals")),
            ("  baseline API GET /v1/referrals", "provider",
             lambda role, i: encode_get(host, "/v1/referrals", token=tokens[role][i])),
            ("provider: referral summary page", "provider",
             page(lambda i: f"/provider/referrals/{referrals[i % len(referrals)]}")),
            ("governance: ledger page", "governance", page(lambda i: "/governance/ledger")),
            ("  baseline API GET /v1/audit/verify", "governance",
             lambda role, i: encode_get(host, "/v1/audit/verify", token=tokens[role][i])),
            ("governance: accesses page", "governance", page(lambda i: "/governance/accesses")),
            ("governance: outcomes page", "governance", page(lambda i: "/governance/outcomes")),
            ("governance: area counts page", "governance",
             page(lambda i: "/governance/area-counts")),
            ("  baseline API GET /v1/area-counts", "governance",
             lambda role, i: encode_get(host, "/v1/area-counts", token=tokens[role][i])),
            ("data officer: link runs page", "data_officer", page(lambda i: "/data/runs")),
            ("  baseline status page / (no operation)", "governance",
             lambda role, i: encode_get(host, "/")),
        ]
        rows = []
        print(f"{'page':42s} {'p50':>7s} {'p95':>7s} {'p99':>7s} {'n':>5s} | closed loop:"
              f" {'p50':>7s} {'p95':>7s} {'pages/s':>8s} | {'first':>7s}  errors", flush=True)
        for name, role, build in targets:
            count = len(sessions[role])
            # 20 simulated users on this page: the role's users, repeated to 20 clients.
            requests = [build(role, i % count) for i in range(args.users)]
            warm = run_load("127.0.0.1", port, requests, clients=1, seconds=1, max_requests=3)
            one = max(warm.latencies or [0.0])
            # The paced phase sends every scheduled request even when late, so a page that
            # takes far longer than the schedule allows would run for minutes: such a page
            # gets fewer requests (marked "capped"); its latency still shows it.
            budget = int(args.rate * args.seconds)
            capped = one * budget / 2 > 3 * args.seconds
            if capped:
                budget = max(args.users * 2, int(3 * args.seconds * 2 / max(one, 1e-3)))
            paced = run_load("127.0.0.1", port, requests, clients=args.users,
                             seconds=args.seconds, rate=args.rate, max_requests=budget)
            closed = run_load("127.0.0.1", port, requests, clients=args.users,
                              seconds=args.seconds / 2,
                              max_requests=budget if capped else 1_000_000)
            bad = {s: n for s, n in {**paced.statuses, **closed.statuses}.items() if s != 200}
            rows.append((name + (" (capped)" if capped else ""), percentiles(paced.latencies),
                         paced.count, percentiles(closed.latencies),
                         closed.count / max(closed.wall, 1e-9), bad))
            _, p, n, c, per_s, _ = rows[-1]
            # "first": the slowest of the 1-client warm-up requests (a cold cache shows here).
            print(f"{rows[-1][0]:42s} {p['p50']:7.1f} {p['p95']:7.1f} {p['p99']:7.1f} {n:5d} |"
                  f"              {c['p50']:7.1f} {c['p95']:7.1f} {per_s:8.1f} | "
                  f"{one * 1000:7.1f}  {bad or ''}", flush=True)
            if bad:
                failed = True
        log = home_dir / "ledger" / "log.jsonl"
        entries = log.read_bytes().count(b"\n") if log.exists() else 0
        print(f"ledger at the end: {entries} entries, {log.stat().st_size / 1e6:.1f} MB "
              "(what the ledger page's verify re-tags per request)" if log.exists() else "")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.users} simulated users; paced at {args.rate:g} pages/s for {args.seconds:g}s, "
          f"then closed loop for {args.seconds / 2:g}s; times in ms (table above)")
    baseline_of = {name.replace(" (capped)", ""): p["p95"] for name, p, *_ in rows}
    print("ratios of paced p95 (page / its API baseline, same operation, same run):")
    for page_name, base in (("adviser: barrier summary page", "  baseline API POST /v1/summaries"),
                            ("provider: inbox page", "  baseline API GET /v1/referrals"),
                            ("governance: ledger page", "  baseline API GET /v1/audit/verify"),
                            ("governance: area counts page", "  baseline API GET /v1/area-counts")):
        print(f"  {page_name:40s} {baseline_of[page_name] / baseline_of[base]:.2f}x")
    pages = [(name, p) for name, p, *_ in rows if not name.startswith("  baseline")]
    over = [(name, p["p95"]) for name, p in pages if not p["p95"] < 100]
    verdict = not over and not failed
    print(f"pages with paced p95 >= 100 ms: {over or 'none'} -> "
          f"{'PASS' if verdict else 'FAIL'} (target: every page p95 < 100 ms, no errors)")
    print(json.dumps({"loadavg_at_end": open("/proc/loadavg").read().strip()}))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
