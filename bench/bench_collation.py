"""Collation benchmark: person resolution latency (p50/p95), whole summary requests, and
area counts with disclosure control.

    .venv/bin/python bench/bench_collation.py --people 5000 --requests 200

Builds a throw-away home: synthetic sources -> real extracts -> installed as ingest would
-> a link run. The link run and scorer are the linkage unit's when available
(`linkage.score_identity_against_run` with `joinedup ingest` + `joinedup link`), else the
test stand-ins (a perfect run from the ground truth and an exact-token scorer); the output
says which. Resolution = encode the identifiers with the connectors' IdentityEncoder +
score against the run + decide (matched / no match / needs review).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.synth_people import REF_DATE  # noqa: E402
from joinedup import collate  # noqa: E402
from joinedup import operations as ops  # noqa: E402
from joinedup.home import init_home  # noqa: E402
from joinedup.service_context import ServiceContext  # noqa: E402
from joinedup.users import User  # noqa: E402
from linkage.collation import DisclosureSettings, area_profiles, count_by_area, protect  # noqa: E402
from tests.collation.standins import TokenScorer, build_linked_home  # noqa: E402
from tests.collation.test_collate import ALL_CATEGORIES, identifiers_of, pick_people  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--scorer", choices=["auto", "standin"], default="auto")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = init_home(Path(tmp) / "home", project_id="bench-collation")
        t0 = time.perf_counter()
        built = build_linked_home(home, people=args.people, seed=3)
        print(f"setup: {args.people} people, {len(built['entities'])} records, "
              f"{time.perf_counter() - t0:.1f} s")
        scorer, which = None, "linkage.score_identity_against_run on a real link run"
        if args.scorer == "standin":
            scorer, which = TokenScorer(home), "test stand-in TokenScorer (exact tokens), truth run"
        else:
            try:
                from linkage import active_extracts, link_extracts
            except ImportError:
                scorer, which = TokenScorer(home), "test stand-in TokenScorer (linkage not available)"
            else:
                t0 = time.perf_counter()
                link_extracts(active_extracts(home.store_path, home.extracts_dir),
                              home.runs_dir / "run-real")
                (home.runs_dir / "CURRENT").write_text("run-real\n")
                print(f"link run (real linkage): {time.perf_counter() - t0:.1f} s")
        print(f"scorer: {which}")
        ctx = ServiceContext(home)
        try:
            people = pick_people(built, args.requests)
            ids = [identifiers_of(built, p) for p in people]
            s = time.perf_counter()
            collate.resolve_identifiers(ctx, ids[0], scorer=scorer)  # loads the run once
            print(f"first resolution (loads the run): {(time.perf_counter() - s) * 1000:.0f} ms")
            # Interleaved, so both see the same cache state: the whole resolution, and the
            # scorer alone (the linkage unit's part) on the same encoded probe.
            from linkage.collation.resolve import default_scorer

            index = collate.current_run_index(ctx)
            score = scorer or default_scorer()
            times, parts = [], []
            outcomes: dict[str, int] = {}
            for one in ids:
                s = time.perf_counter()
                r = collate.resolve_identifiers(ctx, one, scorer=scorer)
                times.append((time.perf_counter() - s) * 1000)
                outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
                enc = collate.encode_identity(ctx, index, one)
                s = time.perf_counter()
                score(index.run_dir, enc)
                parts.append((time.perf_counter() - s) * 1000)
            print(f"resolution: n={len(times)} p50={pct(times, .5):.2f} ms p95={pct(times, .95):.2f} ms "
                  f"max={max(times):.2f} ms outcomes={outcomes}")
            print(f"  of which the scorer alone: p50={pct(parts, .5):.2f} ms p95={pct(parts, .95):.2f} ms")

            for one in ids:
                ctx.consent.grant(ctx.person_key(one), ["employment_support"], ALL_CATEGORIES,
                                  recorded_by="bench", collection_method="in_person_signed")
            adviser = {"id": "adv", "role": "adviser", "organisation": "csc-margate"}
            as_of = date.fromisoformat(str(REF_DATE))
            times = []
            for one in ids:
                s = time.perf_counter()
                ops.request_summary(ctx, User(**adviser),
                                    ops.SummaryRequest(one, scorer=scorer, as_of=as_of))
                times.append((time.perf_counter() - s) * 1000)
            print(f"summary request (resolve + consent + policy + decrypt + ledger): "
                  f"p50={pct(times, .5):.2f} ms p95={pct(times, .95):.2f} ms")

            gov = {"id": "gov", "role": "governance", "organisation": "governance-board"}
            s = time.perf_counter()
            result = ops.request_area_counts(ctx, User(**gov),
                                             ops.AreaCountsRequest(level="sector", as_of=as_of))
            meta = result["metadata"]
            print(f"area counts by sector: {time.perf_counter() - s:.2f} s for "
                  f"{len(built['entities'])} records, {meta['areas']} areas, "
                  f"{meta['suppressed_primary']} primary + {meta['suppressed_secondary']} secondary suppressed")
        finally:
            ctx.close()

    # Disclosure control alone on a larger table (60 sectors x 11 barriers).
    import random

    rng = random.Random(1)
    codes = ["MH", "PH", "DIS", "SUB", "HOU", "FIN", "SKL", "CAR", "CLV", "FAM", "WRK"]
    sectors = [f"S{i}" for i in range(60)]
    profiles = area_profiles(
        (rng.choice(sectors), [c for c in codes if rng.random() < 0.04]) for _ in range(20000)
    )
    s = time.perf_counter()
    table = protect(count_by_area(profiles, codes, "sector", DisclosureSettings()))
    m = table.metadata()
    print(f"disclosure control, 60 x 11 table from 20000 people: {time.perf_counter() - s:.2f} s, "
          f"{m['suppressed_primary']} primary + {m['suppressed_secondary']} secondary")


if __name__ == "__main__":
    main()
