"""The council source in a real PostgreSQL server (started by scripts/postgres.sh)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.sources import SourceError, read_records
from connectors.synth import write_synthetic_sources

pytestmark = pytest.mark.postgres


def test_council_synthesised_into_postgres_reads_back_as_from_sqlite(postgres_dsn, tmp_path):
    summary = write_synthetic_sources(tmp_path / "pg", 800, seed=21, council_dsn=postgres_dsn)
    write_synthetic_sources(tmp_path / "lite", 800, seed=21)
    assert not (tmp_path / "pg" / "council.sqlite").exists()
    assert "127.0.0.1" in summary["council"]

    from_pg = list(read_records("council", postgres_dsn))
    from_sqlite = list(read_records("council", str(tmp_path / "lite" / "council.sqlite")))
    assert len(from_pg) == summary["records"]["council"] > 0
    assert from_pg == from_sqlite  # same identities, same indicators, same order

    truth = pd.read_csv(tmp_path / "pg" / "ground_truth.csv", dtype=str)
    assert {r.identity["local_id"] for r in from_pg} == set(truth.loc[truth.source == "council", "local_id"])
    assert any(r.indicators for r in from_pg)


def test_synthesising_again_replaces_the_council_tables(postgres_dsn, tmp_path):
    write_synthetic_sources(tmp_path / "a", 300, seed=1, council_dsn=postgres_dsn)
    summary = write_synthetic_sources(tmp_path / "b", 200, seed=2, council_dsn=postgres_dsn)
    engine = sa.create_engine(postgres_dsn)
    with engine.connect() as conn:
        residents = conn.execute(sa.text("SELECT count(*) FROM residents")).scalar_one()
    engine.dispose()
    assert residents == summary["records"]["council"]


def test_postgres_database_without_council_tables_is_refused(postgres_dsn, tmp_path):
    write_synthetic_sources(tmp_path, 50, seed=3, council_dsn=postgres_dsn)
    read_records("council", postgres_dsn)  # complete: accepted
    engine = sa.create_engine(postgres_dsn)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS supporting_families"))
    engine.dispose()
    with pytest.raises(SourceError, match="supporting_families"):
        read_records("council", postgres_dsn)


def test_unreachable_postgres_is_a_source_error_without_the_password(postgres_dsn):
    dsn = "postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/nothing"
    with pytest.raises(SourceError) as info:
        read_records("council", dsn)
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_postgres_duplicate_person_refs_are_rejected_through_the_cli(postgres_dsn, tmp_path):
    """A council table without its key (legacy systems have them) holding a person twice:
    the later row is rejected with its reason, and the counts add up."""
    import csv
    import json
    import subprocess
    import sys

    from joinedup.home import init_home

    write_synthetic_sources(tmp_path / "pg", 120, seed=4, council_dsn=postgres_dsn)
    engine = sa.create_engine(postgres_dsn)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE residents DROP CONSTRAINT residents_pkey"))
        third = conn.execute(sa.text("SELECT person_ref FROM residents ORDER BY person_ref OFFSET 2 LIMIT 1")).scalar_one()
        conn.execute(sa.text("INSERT INTO residents SELECT * FROM residents WHERE person_ref = :p"), {"p": third})
        total = conn.execute(sa.text("SELECT count(*) FROM residents")).scalar_one()
    engine.dispose()
    init_home(tmp_path / "home", project_id="proj-pg-bad")
    out = tmp_path / "extract"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "joinedup"), "extract", "--home", str(tmp_path / "home"),
         "--kind", "council", "--source-name", "council-pg", "--input", postgres_dsn, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["read"] == total == counts["accepted"] + counts["rejected"]
    with (out / "rejects.csv").open() as fh:
        rejects = [r for r in csv.DictReader(fh) if r["action"] == "rejected"]
    assert {"row_number": "4", "field": "local_id", "reason": "duplicate local id (first at row 3)",
            "action": "rejected"} in rejects
