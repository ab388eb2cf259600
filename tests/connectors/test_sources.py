"""The four agency readers: round trips of the synthetic sources and refusals of bad input."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from connectors.mapping import mapping_from_dict
from connectors.records import IDENTITY_FIELDS
from connectors.sources import SourceError, read_records, reader_module

REPO = Path(__file__).resolve().parents[2]
INPUTS = {
    "dwp": "dwp_claimants.csv",
    "council": "council.sqlite",
    "nhs": "nhs",
    "housing": "housing_tenancies.csv",
}


def catalogue_codes() -> set[str]:
    """Indicator codes listed in docs/CONTRACTS.md (the catalogue table)."""
    text = (REPO / "docs" / "CONTRACTS.md").read_text()
    return set(re.findall(r"^\| `([a-z]+\.[a-z0-9_]+)` \|", text, flags=re.M))


def _rows_written(root: Path, kind: str) -> int:
    if kind in ("dwp", "housing"):
        with (root / INPUTS[kind]).open(newline="") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    if kind == "council":
        with sqlite3.connect(root / "council.sqlite") as db:
            return db.execute("SELECT count(*) FROM residents").fetchone()[0]
    return sum(
        1
        for f in (root / "nhs").glob("*.json")
        for e in json.loads(f.read_text())["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_reader_round_trips_its_synthetic_source(synth_dir, kind):
    records = list(read_records(kind, str(synth_dir / INPUTS[kind])))
    truth = pd.read_csv(synth_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    expected_ids = set(truth.loc[truth.source == kind, "local_id"])
    assert len(records) == _rows_written(synth_dir, kind) == len(expected_ids)
    assert [r.row_number for r in records] == list(range(1, len(records) + 1))
    assert {r.identity["local_id"] for r in records} == expected_ids
    codes = catalogue_codes()
    assert len(codes) > 15
    seen = set()
    for r in records:
        assert tuple(r.identity) == IDENTITY_FIELDS or set(r.identity) == set(IDENTITY_FIELDS)
        assert all(v is None or isinstance(v, str) for v in r.identity.values())
        for field in ("given_name", "family_name", "date_of_birth"):
            assert r.identity[field], (kind, field)
        for ind in r.indicators:
            assert ind.code in codes, ind.code
            assert ind.code.startswith(f"{kind}.")
            seen.add(ind.code)
    assert len(seen) >= 3  # the source's indicators really come through


def test_readers_pass_malformed_values_through_unvalidated(synth_dir):
    truth = pd.read_csv(synth_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    bad = truth[truth.errors.str.contains("bad_dob")]
    assert len(bad) > 0
    for kind in INPUTS:
        wanted = set(bad.loc[bad.source == kind, "local_id"])
        got = {r.identity["local_id"]: r.identity["date_of_birth"] for r in read_records(kind, str(synth_dir / INPUTS[kind])) if r.identity["local_id"] in wanted}
        assert set(got) == wanted
        for value in got.values():  # 30 February or month 13: impossible, still yielded raw
            parts = re.split(r"[-/]", value)
            day, month = (parts[2], parts[1]) if "-" in value else (parts[0], parts[1])
            assert (day, month) == ("30", "02") or month == "13"


def test_identity_values_are_the_native_ones(synth_dir):
    with (synth_dir / "dwp_claimants.csv").open(newline="") as fh:
        first = next(csv.DictReader(fh))
    rec = next(iter(read_records("dwp", str(synth_dir / "dwp_claimants.csv"))))
    assert rec.identity["nino"] == first["nino"]
    assert rec.identity["family_name"] == first["surname"]
    assert rec.identity["date_of_birth"] == first["date_of_birth"]
    assert rec.identity["address"] == " ".join(p for p in (first["address_line_1"], first["address_line_2"]) if p)
    assert rec.identity["nhs_number"] is None  # DWP holds no NHS number


def test_a_mapping_override_changes_the_columns_read(synth_dir):
    override = mapping_from_dict({"identity": {"local_id": "nino"}})
    rec = next(iter(read_records("dwp", str(synth_dir / "dwp_claimants.csv"), override)))
    assert rec.identity["local_id"] == rec.identity["nino"]


def test_council_reader_aggregates_service_tables_per_resident(synth_dir):
    db = synth_dir / "council.sqlite"
    with sqlite3.connect(db) as conn:
        arrears = dict(conn.execute("SELECT person_ref, sum(ctax_arrears_gbp) FROM ctax_accounts GROUP BY person_ref"))
        leavers = {r for (r,) in conn.execute("SELECT person_ref FROM care_leavers")}
        open_sf = {r for (r,) in conn.execute("SELECT person_ref FROM supporting_families WHERE case_status = 'open'")}
        closed_sf = {r for (r,) in conn.execute("SELECT person_ref FROM supporting_families WHERE case_status = 'closed'")}
    assert leavers and open_sf and closed_sf
    for rec in read_records("council", str(db)):
        ref = rec.identity["local_id"]
        codes = {i.code: i.value for i in rec.indicators}
        if ref in arrears:
            assert codes["council.ctax_arrears_gbp"] == pytest.approx(arrears[ref])
        else:
            assert "council.ctax_arrears_gbp" not in codes
        assert ("council.care_leaver" in codes) == (ref in leavers)
        assert ("council.supporting_families" in codes) == (ref in open_sf)


# ------------------------------------------------------------------ refusals


def _assert_refused(kind: str, input_: str, *fragments: str, override=None) -> None:
    with pytest.raises(SourceError) as info:
        read_records(kind, input_, override)  # raises before any record is asked for
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("kind", ["dwp", "housing"])
def test_csv_reader_refuses_a_missing_mapped_column(synth_dir, tmp_path, kind):
    frame = pd.read_csv(synth_dir / INPUTS[kind], dtype=str)
    column = reader_module(kind).DEFAULT_MAPPING.identity["family_name"].columns[0]
    path = tmp_path / f"{kind}.csv"
    frame.drop(columns=[column]).to_csv(path, index=False)
    _assert_refused(kind, str(path), str(path), column)


@pytest.mark.parametrize("kind", ["dwp", "housing"])
def test_csv_reader_refuses_a_file_of_another_schema(synth_dir, tmp_path, kind):
    path = tmp_path / "other.csv"
    other = "housing" if kind == "dwp" else "dwp"
    path.write_bytes((synth_dir / INPUTS[other]).read_bytes())
    _assert_refused(kind, str(path), str(path), "missing column")


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_reader_refuses_an_input_that_does_not_exist(tmp_path, kind):
    path = tmp_path / "nowhere" / "input.dat"
    _assert_refused(kind, str(path), str(path))


@pytest.mark.parametrize("kind", ["dwp", "housing"])
def test_csv_reader_refuses_an_empty_file(tmp_path, kind):
    path = tmp_path / "empty.csv"
    path.write_text("")
    _assert_refused(kind, str(path), str(path), "empty")


def test_nhs_reader_refuses_json_that_is_not_fhir(tmp_path):
    path = tmp_path / "not-fhir.json"
    path.write_text(json.dumps({"patients": [{"name": "x"}]}))
    _assert_refused("nhs", str(path), str(path), "not a FHIR Bundle")


def test_nhs_reader_refuses_a_patient_resource_in_place_of_a_bundle(tmp_path):
    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"resourceType": "Patient", "id": "x"}))
    _assert_refused("nhs", str(path), str(path), "not a FHIR Bundle")


def test_nhs_reader_refuses_a_broken_file_anywhere_in_the_directory_up_front(synth_dir, tmp_path):
    folder = tmp_path / "nhs"
    folder.mkdir()
    for f in (synth_dir / "nhs").glob("*.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "zzz-stray.json").write_text("this is not json")
    _assert_refused("nhs", str(folder), "zzz-stray.json")


def test_nhs_reader_refuses_invalid_json_that_looks_like_a_bundle(tmp_path):
    path = tmp_path / "truncated.json"
    path.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    _assert_refused("nhs", str(path), str(path), "not valid JSON")


def test_nhs_reader_refuses_an_empty_directory(tmp_path):
    _assert_refused("nhs", str(tmp_path), str(tmp_path), "no *.json")


def test_nhs_reader_refuses_an_unknown_mapped_field(synth_dir):
    override = mapping_from_dict({"identity": {"locality": "district"}})
    _assert_refused("nhs", str(synth_dir / "nhs"), "district", override=override)


def test_council_reader_refuses_a_database_without_the_council_tables(tmp_path):
    path = tmp_path / "empty.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE residents (person_ref TEXT)")
    _assert_refused("council", f"sqlite:///{path}", str(path), "missing table", "ctax_accounts")


def test_council_reader_refuses_a_mapped_column_the_residents_table_lacks(synth_dir):
    override = mapping_from_dict({"identity": {"locality": "ward"}})
    _assert_refused("council", str(synth_dir / "council.sqlite"), "council.sqlite", "ward", override=override)


def test_council_reader_refuses_a_missing_sqlite_file_without_creating_it(tmp_path):
    path = tmp_path / "missing.sqlite"
    _assert_refused("council", f"sqlite:///{path}", str(path))
    assert not path.exists()


def test_council_reader_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_text("not a database at all " * 100)
    _assert_refused("council", str(path), str(path))


def test_fast_identity_picker_agrees_with_the_mapping(synth_dir):
    """The readers' picker must give exactly what Mapping.pick_identity gives."""
    from connectors.sources._agency_csv import identity_picker

    odd = mapping_from_dict({"identity": {"address": ["address_line_1", "address_line_2", "town"], "sex": "sex"}})
    rows = list(csv.DictReader((synth_dir / "dwp_claimants.csv").open(newline="")))[:500]
    rows += [{"sex": "  ", "address_line_1": " 3 X Road ", "address_line_2": None, "town": 7}, {}]
    for mapping in (reader_module("dwp").DEFAULT_MAPPING, odd):
        pick = identity_picker(mapping)
        for row in rows:
            expected = dict.fromkeys(IDENTITY_FIELDS)
            expected.update(mapping.pick_identity(row))
            assert pick(row) == expected
