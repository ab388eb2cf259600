"""Ingest, link, stable ids, report and person scoring on real extracts of the synthetic
sources (real connectors, real DuckDB store, real CLI)."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from connectors.keys import KeyRing
from joinedup.cli import cli
from joinedup.home import init_home
from linkage import (
    IngestError,
    active_extracts,
    default_settings,
    ingest_extracts,
    link_extracts,
    load_settings,
    save_settings,
    score_identity_against_run,
)
from linkage.settings import CLK_COLUMNS, SettingsError
from tests.linkage.quality import build_extracts, pair_quality

PEOPLE = 1500


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("linkage")
    home = init_home(root / "home")
    extracts = build_extracts(root / "src", root / "staged", home.keyring(), PEOPLE, seed=11)
    return {"root": root, "home": home, "extracts": extracts}


@pytest.fixture(scope="module")
def linked(world):
    """The four extracts ingested through the CLI, then linked through the CLI."""
    home = world["home"]
    runner = CliRunner()
    res = runner.invoke(cli, ["ingest", "--home", str(home.root), *map(str, world["extracts"].values())])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["link", "--home", str(home.root), "--out", "run1"])
    assert res.exit_code == 0, res.output
    return home.runs_dir / "run1"


def _ingest(home, dirs):
    return ingest_extracts(dirs, home.extracts_dir, home.store_path, home.project_id,
                           home.keyring().key_ids())


def test_quality_on_synthetic_sources(world, linked):
    q = pair_quality(linked, world["root"] / "src", world["root"] / "staged")
    assert q["cross_source"]["true_pairs"] > 500 and q["within_source"]["true_pairs"] > 20
    for kind in ("cross_source", "within_source"):
        assert q[kind]["precision"] >= 0.995, q
        assert q[kind]["recall"] >= 0.99, q


def test_run_outputs_follow_the_contract(world, linked):
    home = world["home"]
    assert (home.runs_dir / "CURRENT").read_text().strip() == "run1"
    links = pq.read_table(linked / "links.parquet")
    assert links.column_names == ["source_l", "ref_l", "source_r", "ref_r", "match_probability",
                                  "match_weight"]
    summary = json.loads((linked / "summary.json").read_text())
    report_t = min(summary["thresholds"]["report_match_probability"],
                   summary["thresholds"]["cluster_match_probability"])
    assert min(links.column("match_probability").to_pylist()) >= report_t
    entities = pq.read_table(linked / "entities.parquet")
    assert entities.column_names == ["entity_id", "source", "ref"]
    # every ingested record has exactly one entity
    n_records = sum(pq.read_metadata(e / "linkage.parquet").num_rows for e in world["extracts"].values())
    assert entities.num_rows == n_records
    pairs = set(zip(entities.column("source").to_pylist(), entities.column("ref").to_pylist(), strict=False))
    assert len(pairs) == n_records
    summary = json.loads((linked / "summary.json").read_text())
    assert summary["records"] == n_records
    assert summary["entities"] == len(set(entities.column("entity_id").to_pylist()))
    assert summary["entity_changes"]["new"] == summary["entities"]  # first run: all new
    model = json.loads((linked / "model.json").read_text())
    assert all("m_probability" in lv for c in model["comparisons"] for lv in c["comparison_levels"]
               if not lv.get("is_null_level") and c["output_column_name"] == "date_of_birth")
    saved = load_settings(linked / "settings.json")
    chosen = saved["splink"].pop("blocking_rules_to_generate_predictions")
    expected = default_settings()
    expected["splink"].pop("blocking_rules_to_generate_predictions")
    assert saved == expected
    # the run's rules: the candidates it chose, as the summary lists them
    assert chosen == summary["blocking"]["chosen"]
    assert set(chosen) <= set(expected["blocking"]["candidates"])
    report = (linked / "report.html").read_text()
    assert "vegaEmbed" in report and "cdn.jsdelivr" not in report  # charts inline, offline
    assert report.count("<h2>") >= 8


def test_report_and_links_hold_no_identifier_and_no_content(world, linked):
    import csv

    text = b"".join((linked / n).read_bytes() for n in
                    ("report.html", "summary.json", "model.json", "links.parquet", "entities.parquet"))
    with open(world["root"] / "src" / "dwp_claimants.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:50]
    cols = [c for c in rows[0] if c.lower() in ("nino", "family_name", "surname", "postcode")]
    assert cols
    for row in rows:
        for c in cols:
            if row[c] and len(row[c]) >= 5:
                assert row[c].encode() not in text


def test_relink_after_a_newer_extract_keeps_entity_ids(world, linked, tmp_path):
    home = world["home"]
    # The DWP source sends a newer extract of the same data: the same keyed refs.
    newer = tmp_path / "dwp2"
    from connectors.extract import pseudonymise_extract

    pseudonymise_extract(home.keyring(), "dwp", "dwp-thanet",
                         str(world["root"] / "src" / "dwp_claimants.csv"), None, newer)
    _ingest(home, [newer])
    active = {e.source: e.extract_id for e in active_extracts(home.store_path, home.extracts_dir)}
    assert active["dwp-thanet"] == json.loads((newer / "manifest.json").read_text())["extract_id"]
    res = CliRunner().invoke(cli, ["link", "--home", str(home.root), "--out", "run2"])
    assert res.exit_code == 0, res.output
    run2 = home.runs_dir / "run2"
    assert (home.runs_dir / "CURRENT").read_text().strip() == "run2"
    e1 = pq.read_table(linked / "entities.parquet").to_pandas()
    e2 = pq.read_table(run2 / "entities.parquet").to_pandas()
    # Records of unchanged sources keep their entity id.
    same = e1[e1.source != "dwp-thanet"].merge(e2, on=["source", "ref"], suffixes=("_1", "_2"))
    assert len(same) == (e1.source != "dwp-thanet").sum()
    assert (same.entity_id_1 == same.entity_id_2).mean() >= 0.999
    # The re-extracted DWP records keep theirs too (refs are keyed per project and record).
    dwp1 = e1[e1.source == "dwp-thanet"].entity_id
    dwp2 = e2[e2.source == "dwp-thanet"].entity_id
    assert set(e1[e1.source == "dwp-thanet"].ref) == set(e2[e2.source == "dwp-thanet"].ref)
    assert len(set(dwp1) & set(dwp2)) >= 0.99 * len(set(dwp1))
    summary = json.loads((run2 / "summary.json").read_text())
    assert summary["entity_changes"]["kept"] >= 0.99 * summary["entity_changes"]["previous_entities"]
    assert summary["entity_changes"]["new"] <= 0.01 * summary["entities"]


def test_scoring_an_identity_finds_its_entity_and_agrees_with_links(world, linked):
    from linkage.settings import BLOCKING_COLUMNS, TOKEN_COLUMNS

    cols = TOKEN_COLUMNS + BLOCKING_COLUMNS + CLK_COLUMNS
    records = pq.read_table(linked / "records.parquet").to_pylist()  # exact int64 tokens
    entities = pq.read_table(linked / "entities.parquet").to_pandas()
    links = pq.read_table(linked / "links.parquet").to_pandas()
    linked_refs = set(links.ref_l)
    sample = [r for r in records if r["ref"] in linked_refs][:30]
    checked = 0
    for rec in sample:
        ident = {c: rec[c] for c in cols}
        found = score_identity_against_run(linked, ident)
        own = entities[(entities.source == rec["source"]) & (entities.ref == rec["ref"])].entity_id.iloc[0]
        assert found[0]["entity_id"] == own
        for cand in found:
            pair = links[((links.ref_l == rec["ref"]) & (links.ref_r == cand["ref"]))
                         | ((links.ref_r == rec["ref"]) & (links.ref_l == cand["ref"]))]
            if len(pair):
                assert cand["match_weight"] == pytest.approx(pair.match_weight.iloc[0], abs=1e-6)
                checked += 1
    assert checked >= 20


def test_scoring_a_stranger_finds_no_plausible_entity(world, linked):
    from connectors.pseudonymise import IdentityEncoder

    enc = IdentityEncoder(world["home"].keyring())
    ident = enc.encode_identity({"given_name": "Zebedee", "family_name": "Quillfeather",
                                 "date_of_birth": "1901-02-03", "postcode": "ZZ9 9ZZ"})
    assert all(c["match_probability"] < 0.5 for c in score_identity_against_run(linked, ident))


def test_ingest_refuses_tampered_foreign_and_repeated_extracts(world, tmp_path):
    home = init_home(tmp_path / "h2", project_id=world["home"].project_id)
    # Same project id but a different master secret: another project's keys.
    src = world["extracts"]["housing"]
    with pytest.raises(IngestError, match="key id"):
        _ingest(home, [src])
    # Tampered file.
    home_same = world["home"]
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad)
    with open(bad / "linkage.parquet", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    con = duckdb.connect(str(home_same.store_path))
    before = con.execute("SELECT count(*) FROM extracts").fetchall()[0][0]
    con.close()
    with pytest.raises(IngestError, match="manifest hash"):
        _ingest(home_same, [world["extracts"]["nhs"], bad])  # one bad: none registered
    # Repeated ingest.
    with pytest.raises(IngestError, match="already ingested"):
        _ingest(home_same, [src])
    con = duckdb.connect(str(home_same.store_path))
    assert con.execute("SELECT count(*) FROM extracts").fetchall()[0][0] == before
    con.close()
    # Another linkage project altogether.
    other = KeyRing(b"x" * 32, "other-project")
    with pytest.raises(IngestError, match="linkage project"):
        ingest_extracts([src], home_same.extracts_dir, home_same.store_path, "other-project",
                        other.key_ids())
    res = CliRunner().invoke(cli, ["ingest", "--home", str(home_same.root), str(bad)])
    assert res.exit_code != 0 and "nothing ingested" in res.output and "linkage.parquet" in res.output


def test_settings_round_trip_and_validation(tmp_path):
    doc = default_settings()
    path = tmp_path / "s.json"
    save_settings(doc, path)
    assert load_settings(path) == doc
    doc["thresholds"]["cluster_match_probability"] = 1.5
    path.write_text(json.dumps(doc))
    with pytest.raises(SettingsError, match="cluster_match_probability"):
        load_settings(path)
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="invalid JSON"):
        load_settings(path)


def test_failed_link_leaves_previous_run_intact(world, linked, tmp_path):
    bad = [e for e in active_extracts(world["home"].store_path, world["home"].extracts_dir)]
    before = (linked / "entities.parquet").read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(bad[0].path, broken)
    (broken / "linkage.parquet").write_bytes(b"not parquet")
    from linkage.ingest import extract_from_dir

    with pytest.raises(Exception):  # noqa: B017 - any failure; the point is what remains
        link_extracts([extract_from_dir(broken)], linked)
    assert (linked / "entities.parquet").read_bytes() == before
    assert not [p for p in linked.parent.iterdir() if p.name.startswith(".run1.tmp")]
