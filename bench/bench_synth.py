"""Benchmark: synthesise N people into the four agencies' sources, then read each back.

    .venv/bin/python bench/bench_synth.py --people 1000000 --workers 2 --out /tmp/synth-bench

Prints wall time of synthesis, records written per source, peak memory (this process
and its workers), and each reader's throughput (records/s) over what was written.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from connectors.sources import read_records
from connectors.synth import write_synthetic_sources

INPUTS = {"dwp": "dwp_claimants.csv", "council": "council.sqlite", "nhs": "nhs", "housing": "housing_tenancies.csv"}


def _peak_mb() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/joinedup-synth-bench"))
    ap.add_argument("--council-dsn", default=None, help="write/read the council tables in this database")
    ap.add_argument("--no-read", action="store_true", help="skip the reader throughput part")
    ap.add_argument("--keep", action="store_true", help="keep the output directory")
    args = ap.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = write_synthetic_sources(args.out, args.people, args.seed, args.council_dsn, workers=args.workers)
    took = time.perf_counter() - t0
    total = sum(summary["records"].values())
    me, kids = _peak_mb()
    print(f"synth: {args.people:,} people, {args.workers} worker(s): {took:.1f} s "
          f"({args.people / took:,.0f} people/s, {total / took:,.0f} source records/s)")
    print(f"records: {summary['records']}  nhs bundles: {summary['nhs_bundles']}")
    print(f"peak RSS: parent {me:,.0f} MB, largest worker {kids:,.0f} MB")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()) / 1e6
    print(f"output size: {size:,.0f} MB")
    if not args.no_read:
        for kind, name in INPUTS.items():
            t0 = time.perf_counter()
            source = args.council_dsn if kind == "council" and args.council_dsn else str(args.out / name)
            n = sum(1 for _ in read_records(kind, source))
            dt = time.perf_counter() - t0
            where = " (PostgreSQL)" if kind == "council" and args.council_dsn else ""
            print(f"read {kind:8s}{where}: {n:,} records in {dt:.1f} s ({n / dt:,.0f} records/s)")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
