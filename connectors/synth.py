"""Synthetic population and the source systems of four agencies (demo, tests, benchmarks).

`write_synthetic_sources(out, people, seed)` writes, deterministically for a seed:

- `dwp_claimants.csv`        DWP claimant extract
- `council.sqlite`           council database (or tables in PostgreSQL via `council_dsn`)
- `nhs/bundle-NNNNN.json`    FHIR R4 collection Bundles (UK Core Patient, EpisodeOfCare, Condition)
- `housing_tenancies.csv`    housing management system export
- `ground_truth.csv`         source, local_id, person_id, errors  (tests and benchmarks only)
- `people_truth.csv`         person_id, planted barrier severities 0-3, membership (tests only)

People are generated in chunks, each from its own seeded random stream, so memory stays
bounded and the output does not depend on the machine.

Planting rules (what a collation rule set should recover; severity 0 = not planted).
Every planted barrier is evidenced in its *primary* source (membership is forced):
  MH  nhs: talking_therapies completed (1) / active (2); secondary_mental_health active (3);
      dwp (if a claimant): wca_condition mental with LCW (2) / LCWRA (3)
  PH  nhs: long_term_condition; dwp (if a claimant): wca_condition physical, LCW (2) / LCWRA (3)
  DIS dwp: benefit PIP; council (if a resident): care_act_need assessed (2) / eligible (3)
  SUB nhs: drug_alcohol completed (1) / active (2, 3)
  HOU housing: homelessness_application prevention (1); relief + eviction_notice s21 (2);
      main_duty + temporary_accommodation + s8/possession_order (3)
  FIN council: ctax_arrears_gbp 100-399 (1) / 400-1199 (2) / 1200-3000 (3, and sometimes an
      hb_overpayment); housing (if a tenant): rent_arrears_weeks 2-3.9 / 4-7.9 / 8-20;
      dwp (if a claimant): sanctions_12m 1 (2) / 2-3 (3). Without FIN: arrears 0,
      rent arrears under 1.5 weeks, no sanctions.
  SKL dwp: skills_need digital (1) / numeracy or literacy (2) / no_quals (3)
  CAR dwp: benefit CA (1), lone_parent (2), both (3); council: carer's assessment
  CLV council: care_leaver (always severity 2; only people aged 16-25)
  FAM council: open supporting_families case (always severity 2)
  WRK dwp: months_unemployed 6-11 (1) / 12-23 (2) / 24-72 (3); without WRK under 6
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from connectors.files import make_private_dir, make_tree_private, staging_dir
from connectors.sources import council as council_schema
from connectors.synth_agencies import (
    COUNCIL_COLUMNS,
    council_rows,
    dwp_frame,
    housing_frame,
    nhs_bundles,
)
from connectors.synth_people import (
    BARRIERS,
    SOURCES,
    Geography,
    People,
    build_geography,
    make_people,
)

__all__ = ["BARRIERS", "CHUNK", "SOURCES", "write_synthetic_sources"]

CHUNK = 100_000  # people per chunk: each chunk has its own random stream and fits in memory
_OUTPUT_FILES = ("dwp_claimants.csv", "housing_tenancies.csv", "ground_truth.csv", "people_truth.csv", "council.sqlite")


def write_synthetic_sources(
    out: Path, people: int, seed: int, council_dsn: str | None = None, *, workers: int | None = None
) -> dict:
    """Write the four agencies' sources and the truth files under `out`; returns a summary.

    `council_dsn` puts the council tables into that database (replacing them) instead of
    `out/council.sqlite`. `workers` processes generate chunks in parallel (default: one
    per core); the output is the same whatever the number of workers.
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    out = make_private_dir(Path(out))
    # A private staging directory inside `out`; one a killed run left is removed first.
    with staging_dir(out / "synth") as tmp:
        summary = _write_all(tmp, out, people, seed, council_dsn, workers or os.cpu_count() or 1)
        make_tree_private(tmp)  # raw (synthetic) identities: owner-only, as an agency's would be
        for name in _OUTPUT_FILES:
            if (tmp / name).exists():
                os.replace(tmp / name, out / name)
        if (out / "nhs").exists():
            shutil.rmtree(out / "nhs")
        os.replace(tmp / "nhs", out / "nhs")
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


# --------------------------------------------------------------------------- one chunk (worker side)


@functools.lru_cache(maxsize=2)
def _geography(seed: int, people: int) -> Geography:
    return build_geography(seed, people)


def _chunk(seed: int, people: int, chunk_no: int, start: int, n: int) -> dict[str, Any]:
    """Everything one chunk of people contributes to every file (pure: seeded by chunk_no)."""
    geo = _geography(seed, people)
    rng = np.random.default_rng([seed, chunk_no])
    p = make_people(rng, start, n, seed, geo)
    dwp, c_dwp = dwp_frame(rng, p, geo)
    council, c_council = council_rows(rng, p, geo)
    bundles, c_nhs, nhs_ids = nhs_bundles(rng, p, geo)
    housing, c_housing = housing_frame(rng, p, geo)

    def truth(c) -> tuple[list[str], list[str]]:
        return p.person_id[c.pidx].tolist(), [";".join(e) for e in c.errors]

    return {
        "dwp": (dwp, *truth(c_dwp)),
        "council": (council, *truth(c_council)),
        "nhs": (bundles, nhs_ids, *truth(c_nhs)),
        "housing": (housing, *truth(c_housing)),
        "people": _people_truth(p, geo),
    }


def _people_truth(p: People, geo: Geography) -> pd.DataFrame:
    frame = pd.DataFrame({"person_id": p.person_id})
    for k, code in enumerate(BARRIERS):
        frame[code] = p.severity[:, k]
    frame["barrier_count"] = (p.severity > 0).sum(axis=1)
    frame["postcode_sector"] = geo.sector[p.unit]
    frame["ward"] = geo.ward[p.unit]
    for source in SOURCES:
        frame[f"in_{source}"] = p.member[source].astype(int)
    return frame


def _chunks_in_order(seed: int, people: int, workers: int):
    """Chunk outputs in chunk order; with workers > 1, generated ahead in other processes."""
    jobs = [(seed, people, k, start, min(CHUNK, people - start)) for k, start in enumerate(range(0, people, CHUNK))]
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            yield _chunk(*job)
        return
    # spawn, not fork: the parent holds a database connection that a child must not share.
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Future] = deque()
        queue = iter(jobs)
        for job in queue:  # keep a bounded window in flight: memory stays flat
            pending.append(pool.submit(_chunk, *job))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------- writing (parent side)


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path, mode="a", header=self.rows == 0, index=False)
        self.rows += len(frame)


class _CouncilSink:
    """Council tables in one transaction (PostgreSQL: all or nothing), rows via executemany."""

    def __init__(self, dsn: str) -> None:
        self.engine = sa.create_engine(dsn)
        self.conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            # A file written under a temporary name and renamed: no journal needed.
            self.conn.exec_driver_sql("PRAGMA journal_mode=OFF")
            self.conn.exec_driver_sql("PRAGMA synchronous=OFF")
            self.conn.commit()
        self.tx = self.conn.begin()
        council_schema.SCHEMA.drop_all(self.conn)
        council_schema.SCHEMA.create_all(self.conn)
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self.sql = {
            name: f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
            for name, cols in COUNCIL_COLUMNS.items()
        }
        self.residents = 0
        self.seq = {"ctax_accounts": 0, "adult_social_care": 0, "supporting_families": 0}

    def write(self, tables: dict[str, list[tuple]]) -> list[str]:
        local = [f"CR{self.residents + i + 1:08d}" for i in range(len(tables["residents"]))]
        self.residents += len(local)
        rows = {
            "residents": [(local[r[0]], *r[1:]) for r in tables["residents"]],
            "care_leavers": [(local[r[0]], *r[1:]) for r in tables["care_leavers"]],
        }
        for name, prefix in (("ctax_accounts", "CT"), ("adult_social_care", "AS"), ("supporting_families", "SF")):
            first = self.seq[name]
            rows[name] = [(f"{prefix}{first + i + 1:08d}", local[r[1]], *r[2:]) for i, r in enumerate(tables[name])]
            self.seq[name] += len(rows[name])
        for name in COUNCIL_COLUMNS:  # residents first
            if rows[name]:
                self.conn.exec_driver_sql(self.sql[name], rows[name])
        return local

    def close(self, ok: bool) -> None:
        try:
            if ok:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()
            self.engine.dispose()


def _write_all(tmp: Path, out: Path, people: int, seed: int, council_dsn: str | None, workers: int) -> dict:
    dwp = _CsvSink(tmp / "dwp_claimants.csv")
    housing = _CsvSink(tmp / "housing_tenancies.csv")
    truth = _CsvSink(tmp / "ground_truth.csv")
    people_truth = _CsvSink(tmp / "people_truth.csv")
    (tmp / "nhs").mkdir()
    council = _CouncilSink(council_dsn or f"sqlite:///{tmp / 'council.sqlite'}")
    counts = dict.fromkeys(SOURCES, 0)
    errors_planted: dict[str, int] = {}
    bundle_no = 0
    ok = False
    try:
        for chunk in _chunks_in_order(seed, people, workers):
            parts = []

            frame, person_ids, errors = chunk["dwp"]
            local = [f"CLM{counts['dwp'] + i + 1:08d}" for i in range(len(frame))]
            frame.insert(0, "claimant_id", local)
            dwp.write(frame)
            parts.append(("dwp", local, person_ids, errors))

            tables, person_ids, errors = chunk["council"]
            parts.append(("council", council.write(tables), person_ids, errors))

            bundles, nhs_ids, person_ids, errors = chunk["nhs"]
            for bundle in bundles:
                bundle_no += 1
                (tmp / "nhs" / f"bundle-{bundle_no:05d}.json").write_text(bundle, encoding="utf-8")
            parts.append(("nhs", nhs_ids, person_ids, errors))

            frame, person_ids, errors = chunk["housing"]
            local = [f"TEN{counts['housing'] + i + 1:07d}" for i in range(len(frame))]
            frame.insert(0, "tenancy_ref", local)
            housing.write(frame)
            parts.append(("housing", local, person_ids, errors))

            for source, local, person_ids, errors in parts:
                counts[source] += len(local)
                truth.write(pd.DataFrame({"source": source, "local_id": local, "person_id": person_ids, "errors": errors}))
                for tags in errors:
                    for tag in filter(None, tags.split(";")):
                        errors_planted[tag] = errors_planted.get(tag, 0) + 1
            people_truth.write(chunk["people"])
        ok = True
    finally:
        council.close(ok)
    council_where = "council.sqlite" if council_dsn is None else sa.make_url(council_dsn).render_as_string(hide_password=True)
    return {
        "people": people,
        "seed": seed,
        "out": str(out),
        "records": counts,
        "council": council_where,
        "nhs_bundles": bundle_no,
        "errors_planted": dict(sorted(errors_planted.items())),
    }
