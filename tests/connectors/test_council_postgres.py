"""The council source in a real PostgreSQL server (started by scripts/postgres.sh)."""

from __future__ import annotations

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
