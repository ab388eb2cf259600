"""Person-scoring benchmark: `linkage.score_identity_against_run` latency and CPU time.

    .venv/bin/python bench/bench_score.py --people 100000 --probes 500 [--threads 2]

Builds (once, cached under bench/out/score-<people>/) a real link run: synthetic sources
-> the four real extracts -> `linkage.ingest_extracts` -> `linkage.link_extracts`
(Splink). Probes are the adviser's view of real people: identifiers re-encoded with the
connectors' IdentityEncoder from the synthetic sources, some altered (a nickname, day and
month swapped, postcode or DOB missing), plus strangers who match no one. Prints the
load time, then single-thread p50/p95/p99 wall and CPU time per call, and the
throughput of N threads calling concurrently.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.pseudonymise import IdentityEncoder  # noqa: E402
from joinedup.home import init_home, load_home  # noqa: E402
from linkage import active_extracts, ingest_extracts, link_extracts  # noqa: E402
from linkage.score import RunScorer  # noqa: E402
from tests.linkage.quality import build_extracts  # noqa: E402
from tests.linkage.test_score_speed_and_agreement import (  # noqa: E402
    STRANGERS,
    _nicknames,
    _raw_people,
    _variants,
)

# The scorer before this work (one DuckDB connection, a lock, SQL over all records).
BEFORE_COMMIT = "95858c8"


def build_run(people: int) -> tuple[object, Path]:
    out = ROOT / "bench" / "out" / f"score-{people}"
    run = out / "home" / "runs" / "run1"
    if (run / "records.parquet").is_file():
        return load_home(out / "home"), run
    home = init_home(out / "home", project_id=f"bench-score-{people}")
    t0 = time.perf_counter()
    extracts = build_extracts(out / "src", out / "staged", home.keyring(), people, seed=5)
    print(f"extracts: {time.perf_counter() - t0:.0f} s", flush=True)
    ingest_extracts(list(extracts.values()), home.extracts_dir, home.store_path,
                    home.project_id, home.keyring().key_ids())
    t0 = time.perf_counter()
    link_extracts(active_extracts(home.store_path, home.extracts_dir), run)
    print(f"link: {time.perf_counter() - t0:.0f} s", flush=True)
    return home, run



def old_scorer_class():
    """RunScorer as it was at BEFORE_COMMIT, loaded from git into a throw-away module."""
    text = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:linkage/score.py"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "score_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("score_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RunScorer


def make_probes(home, src: Path, n: int) -> list[tuple[str, dict]]:
    enc = IdentityEncoder(home.keyring())
    rng = random.Random(9)
    nick = _nicknames()
    people = _raw_people(src)
    out = []
    while len(out) < n:
        person = rng.choice(people)
        label, raw = rng.choice(sorted(_variants(person, nick, rng).items()))
        out.append((label, enc.encode_identity(raw)))
    for raw in STRANGERS:
        out.append(("stranger", enc.encode_identity(raw)))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def single(scorer, probes) -> dict:
    for _label, p in probes[:20]:
        scorer.score(p)  # warm
    wall, cpu, cands = [], [], 0
    for _label, p in probes:
        w0, c0 = time.perf_counter(), time.thread_time()
        cands += len(scorer.score(p))
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    ms = [x * 1000 for x in wall]
    return {"p50": pct(ms, 0.5), "p95": pct(ms, 0.95), "p99": pct(ms, 0.99), "max": max(ms),
            "cpu_mean": 1000 * sum(cpu) / len(cpu), "candidates": cands / len(probes)}


def concurrent(scorer, probes, threads: int, calls: int) -> dict:
    lat: list[float] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = []
        for i in range(k, calls, threads):
            t0 = time.perf_counter()
            scorer.score(probes[i % len(probes)][1])
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    w0, c0 = time.perf_counter(), time.process_time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    ms = [x * 1000 for x in lat]
    return {"calls_per_s": calls / wall, "cpu_per_call": 1000 * cpu / calls,
            "p50": pct(ms, 0.5), "p99": pct(ms, 0.99)}


def report(name: str, cls, run: Path, probes, threads: int, calls: int) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    scorer = cls(run)
    print(f"[{name}] load: {time.perf_counter() - w0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU", flush=True)
    s = single(scorer, probes)
    print(f"[{name}] single thread, {len(probes)} calls: p50 {s['p50']:.2f} / p95 {s['p95']:.2f} / "
          f"p99 {s['p99']:.2f} / max {s['max']:.2f} ms wall; CPU {s['cpu_mean']:.2f} ms/call; "
          f"{s['candidates']:.1f} candidates/call", flush=True)
    c = concurrent(scorer, probes, threads, calls)
    print(f"[{name}] {threads} threads, {calls} calls: {c['calls_per_s']:.0f} calls/s, "
          f"p50 {c['p50']:.2f} / p99 {c['p99']:.2f} ms, process CPU {c['cpu_per_call']:.2f} ms/call",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=500)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--calls", type=int, default=2000, help="calls in the concurrent phase")
    ap.add_argument("--before", action="store_true",
                    help=f"also time the scorer as it was at {BEFORE_COMMIT} (fewer calls)")
    args = ap.parse_args()
    home, run = build_run(args.people)
    import pyarrow.parquet as pq

    print(f"run: {args.people} people, {pq.read_metadata(run / 'records.parquet').num_rows} records")
    probes = make_probes(home, ROOT / "bench" / "out" / f"score-{args.people}" / "src", args.probes)
    report("now", RunScorer, run, probes, args.threads, args.calls)
    if args.before:
        report("before", old_scorer_class(), run, probes[:100], args.threads, 100)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build-only"]:
        build_run(int(sys.argv[2]))
    else:
        main()
