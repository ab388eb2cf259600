"""The split extract: files, counts, rejects, atomic replacement, and the `joinedup extract` CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import connectors.extract as extract_mod
from connectors.content import decrypt_rows
from connectors.extract import pseudonymise_extract
from connectors.mapping import load_mapping
from connectors.pseudonymise import LINKAGE_COLUMNS
from connectors.sources import SourceError
from joinedup.cli import cli
from joinedup.home import init_home, load_home
from tests.connectors.extract_fixtures import (
    keyring,
    person_rows,
    read_table,
    tokens_by_local_id,
    write_csv,
    write_mapping,
)


@pytest.fixture
def source(tmp_path: Path):
    rows = person_rows(40)
    rows[3]["dob"] = "31/02/1990"  # impossible date, no NHS/NINO/postcode/address -> rejected
    rows[3]["nhs"] = rows[3]["ni"] = rows[3]["pc"] = rows[3]["house"] = rows[3]["street"] = ""
    rows[5]["first"] = rows[5]["surname"] = ""  # no name -> rejected
    rows[8]["nhs"] = rows[8]["nhs"][:-1] + str((int(rows[8]["nhs"][-1]) + 1) % 10)  # bad check digit
    rows[9]["pc"] = "NOT A POSTCODE"  # dropped, row kept
    rows[11]["rec_id"] = ""  # no local id -> rejected
    csv_path = write_csv(tmp_path / "people.csv", rows)
    mapping = load_mapping(write_mapping(tmp_path / "map.toml"))
    return csv_path, mapping, rows


def run(csv_path, mapping, out, **kw):
    return pseudonymise_extract(keyring(), "csv", "test-src", str(csv_path), mapping, out, **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_extract_writes_the_five_parts_with_consistent_counts(source, tmp_path):
    csv_path, mapping, rows = source
    out = tmp_path / "out"
    manifest = run(csv_path, mapping, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "content.parquet", "keymap.parquet", "linkage.parquet", "manifest.json", "rejects.csv", "source.json"]
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"read": 40, "accepted": 37, "rejected": 3, "fields_dropped": 2}
    assert manifest["source"] == "test-src" and manifest["kind"] == "csv"
    assert manifest["linkage_project_id"] == "proj-test"
    assert set(manifest["key_ids"]) == {"token", "clk", "blocking", "content"}
    assert manifest["encoding"]["clk_bits"] == 1024
    # Only what travels is hashed in the manifest; the keymap's and rejects' hashes (which
    # would confirm a guess at the keymap) stay in source.json.
    assert set(manifest["files"]) == {"linkage.parquet", "content.parquet"}
    local = json.loads((out / "source.json").read_text())
    assert set(local["files"]) == {"keymap.parquet", "rejects.csv"}
    for name, digest in {**manifest["files"], **local["files"]}.items():
        assert sha(out / name) == digest, name

    linkage = pq.read_table(out / "linkage.parquet")
    assert tuple(linkage.column_names) == LINKAGE_COLUMNS
    keymap = pq.read_table(out / "keymap.parquet")
    assert keymap.column_names == ["local_id", "ref"]
    content = pq.read_table(out / "content.parquet")
    assert content.column_names == ["ref", "nonce", "ciphertext"]
    assert linkage.num_rows == keymap.num_rows == content.num_rows == 37
    refs = linkage.column("ref").to_pylist()
    assert len(set(refs)) == 37 and all(len(r) == 24 for r in refs)
    assert set(refs) == set(keymap.column("ref").to_pylist()) == set(content.column("ref").to_pylist())
    rejected_ids = {rows[i]["rec_id"] for i in (3, 5, 11)}
    assert not rejected_ids & set(keymap.column("local_id").to_pylist())


def test_rejects_name_row_field_reason_and_action(source, tmp_path):
    csv_path, mapping, _ = source
    out = tmp_path / "out"
    run(csv_path, mapping, out)
    with (out / "rejects.csv").open() as fh:
        rejects = list(csv.DictReader(fh))
    assert list(rejects[0]) == ["row_number", "field", "reason", "action"]
    got = {(r["row_number"], r["field"], r["action"]) for r in rejects}
    assert ("4", "date_of_birth", "rejected") in got  # data row 4 = rows[3]
    assert ("6", "name", "rejected") in got
    assert ("12", "local_id", "rejected") in got
    assert ("9", "nhs_number", "field_dropped") in got
    assert ("10", "postcode", "field_dropped") in got
    bad_nhs = next(r for r in rejects if r["field"] == "nhs_number")
    assert bad_nhs["reason"] == "invalid check digit"
    rejected_rows = {r["row_number"] for r in rejects if r["action"] == "rejected"}
    assert len(rejected_rows) == 3


def test_content_holds_area_code_not_postcode_and_decrypts_per_row(source, tmp_path):
    csv_path, mapping, rows = source
    out = tmp_path / "out"
    manifest = run(csv_path, mapping, out)
    content = read_table(out / "content.parquet")
    docs = decrypt_rows(keyring().content_key(), manifest["extract_id"], content[:2])
    assert len(docs) == 2
    local = {r["ref"]: r["local_id"] for r in read_table(out / "keymap.parquet")}
    by_id = {r["rec_id"]: r for r in rows}
    for doc in docs:
        raw_pc = by_id[local[doc["ref"]]]["pc"]
        assert doc["area"]["postcode_sector"] == raw_pc[:-2]
        assert doc["area"]["postcode_district"] == raw_pc.split()[0]
        assert doc["source"] == "test-src" and doc["kind"] == "csv" and doc["indicators"] == []


def test_batches_do_not_change_counts(source, tmp_path):
    csv_path, mapping, _ = source
    manifest = run(csv_path, mapping, tmp_path / "out", batch_size=7)
    assert manifest["counts"]["accepted"] == 37
    assert pq.read_table(tmp_path / "out" / "linkage.parquet").num_rows == 37


def test_progress_is_reported(source, tmp_path):
    csv_path, mapping, _ = source
    for engine in ("python", "native"):
        seen = []
        run(csv_path, mapping, tmp_path / engine, batch_size=10, progress=seen.append, engine=engine)
        assert seen == [10, 20, 30, 40], engine


def test_failure_mid_write_leaves_old_output_intact(source, tmp_path, monkeypatch):
    csv_path, mapping, _ = source
    out = tmp_path / "out"
    old = run(csv_path, mapping, out)
    before = {p.name: sha(p) for p in out.iterdir()}
    real = extract_mod._write_batch
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "_write_batch", failing)
    with pytest.raises(OSError, match="simulated"):  # the Python engine's writer (the native
        run(csv_path, mapping, out, batch_size=10, engine="python")  # one: test_native_engine.py)
    assert {p.name: sha(p) for p in out.iterdir()} == before
    assert json.loads((out / "manifest.json").read_text())["extract_id"] == old["extract_id"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_process_killed_mid_write_leaves_old_output_intact(source, tmp_path):
    csv_path, mapping, _ = source
    out = tmp_path / "out"
    run(csv_path, mapping, out)
    before = {p.name: sha(p) for p in out.iterdir()}
    script = f"""
import os, connectors.extract as m
from connectors.mapping import load_mapping
from tests.connectors.extract_fixtures import keyring
real = m._write_batch
calls = []
def dying(*a, **k):
    calls.append(1)
    if len(calls) == 2:
        os._exit(3)  # no cleanup, no finally: like a power cut
    return real(*a, **k)
m._write_batch = dying
m.pseudonymise_extract(keyring(), "csv", "test-src", {str(csv_path)!r},
    load_mapping({str(tmp_path / 'map.toml')!r}), {str(out)!r}, batch_size=10, engine="python")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    assert proc.returncode == 3
    assert {p.name: sha(p) for p in out.iterdir()} == before


def test_new_complete_output_replaces_old(source, tmp_path):
    csv_path, mapping, _ = source
    out = tmp_path / "out"
    first = run(csv_path, mapping, out)
    second = run(csv_path, mapping, out)
    assert second["extract_id"] != first["extract_id"]
    assert json.loads((out / "manifest.json").read_text())["extract_id"] == second["extract_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.toml", "out", "people.csv"]


def test_refuses_to_replace_a_directory_that_is_not_an_extract(source, tmp_path):
    csv_path, mapping, _ = source
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    with pytest.raises(extract_mod.ExtractError, match="not replacing"):
        run(csv_path, mapping, out)
    assert (out / "thesis.txt").read_text() == "do not delete"


def test_missing_mapped_column_fails_before_writing(tmp_path):
    rows = person_rows(3)
    csv_path = write_csv(tmp_path / "p.csv", rows, header=["rec_id", "first", "surname", "dob"])
    with pytest.raises(SourceError, match=r"p\.csv.*mapped column\(s\) not found: gender"):
        run(csv_path, load_mapping(write_mapping(tmp_path / "m.toml")), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml", "p.csv"]


def test_csv_without_mapping_uses_identity_named_columns(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("given_name,family_name,date_of_birth,postcode\n"
                    "Ann,Ng,1980-01-02,CT9 1AB\nBob,Ng,,\n")  # Bob: a bare name -> rejected
    manifest = pseudonymise_extract(keyring(), "csv", "plain", str(path), None, tmp_path / "out")
    assert manifest["counts"] == {"read": 2, "accepted": 1, "rejected": 1, "fields_dropped": 0}
    assert read_table(tmp_path / "out" / "keymap.parquet")[0]["local_id"] == "1"


def test_row_without_dob_is_kept_when_postcode_or_address_remains(tmp_path):
    path = tmp_path / "nodob.csv"
    path.write_text("local_id,given_name,family_name,date_of_birth,postcode,address\n"
                    "a,Ann,Ng,,CT9 1AB,\n"  # name + postcode
                    "b,Bob,Ng,,,12 High St\n"  # name + address
                    "c,Cy,Ng,,,\n")  # bare name
    out = tmp_path / "out"
    manifest = pseudonymise_extract(keyring(), "csv", "nodob", str(path), None, out)
    assert manifest["counts"] == {"read": 3, "accepted": 2, "rejected": 1, "fields_dropped": 0}
    rows = tokens_by_local_id(out)
    assert set(rows) == {"a", "b"}
    assert rows["a"]["mk_given_dob"] is None and rows["a"]["mk_names_pc"] is not None
    assert rows["b"]["mk_given_dob"] is None and rows["b"]["mk_names_pc"] is None
    with (out / "rejects.csv").open() as fh:
        rejects = list(csv.DictReader(fh))
    assert [(r["row_number"], r["field"], r["action"]) for r in rejects] == [
        ("3", "date_of_birth", "rejected")]


# ------------------------------------------------------------------ CLI


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home", project_id="proj-cli")
    return tmp_path / "home"


def cli_extract(home: Path, *args: str):
    return CliRunner().invoke(
        cli, ["extract", "--home", str(home), "--kind", "csv", "--source-name", "src", *args]
    )


def test_cli_extract_prints_summary_and_uses_home_keys(source, tmp_path, home):
    csv_path, _, _ = source
    out = tmp_path / "cli-out"
    result = cli_extract(home, "--input", str(csv_path), "--mapping", str(tmp_path / "map.toml"),
                         "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "read 40, accepted 37, rejected 3, fields dropped 2" in lines[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["linkage_project_id"] == "proj-cli"
    assert manifest["key_ids"]["token"] == load_home(home).keyring().key_ids()["token"]


def test_cli_hardening_option_recorded(source, tmp_path, home):
    csv_path, _, _ = source
    out = tmp_path / "cli-out"
    result = cli_extract(home, "--input", str(csv_path), "--mapping", str(tmp_path / "map.toml"),
                         "--out", str(out), "--hardening", "blip")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["encoding"]["hardening"] == "blip"


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.csv", "missing.csv: cannot read"),
        (lambda d: (d / "empty.csv", (d / "empty.csv").write_text(""))[0], "empty file or no header"),
        (lambda d: (d / "bin.csv", (d / "bin.csv").write_bytes(b"\xff\xfe\x00\x81garbage"))[0],
         "bin.csv: not a readable UTF-8 CSV"),
        (lambda d: (d / "other.csv", (d / "other.csv").write_text("a,b\n1,2\n"))[0],
         "other.csv: no identity columns"),
    ],
)
def test_cli_bad_input_exits_non_zero_naming_file_nothing_written(tmp_path, home, make_input, message):
    path = make_input(tmp_path)
    out = tmp_path / "cli-out"
    result = cli_extract(home, "--input", str(path), "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cli-out")]


def test_cli_bad_mapping_and_missing_column(source, tmp_path, home):
    csv_path, _, _ = source
    bad = tmp_path / "bad.toml"
    bad.write_text("[identity]\nshoe_size = 'x'\n")
    result = cli_extract(home, "--input", str(csv_path), "--mapping", str(bad), "--out", str(tmp_path / "o"))
    assert result.exit_code != 0 and "bad.toml" in result.output and "shoe_size" in result.output
    missing = tmp_path / "missing.toml"
    missing.write_text("[identity]\ngiven_name = 'forename'\n")
    result = cli_extract(home, "--input", str(csv_path), "--mapping", str(missing), "--out", str(tmp_path / "o"))
    assert result.exit_code != 0
    assert "people.csv" in result.output and "forename" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_bad_home_is_a_clear_error(source, tmp_path):
    csv_path, _, _ = source
    result = cli_extract(tmp_path / "nohome", "--input", str(csv_path), "--out", str(tmp_path / "o"))
    assert result.exit_code != 0 and "not a joinedup home" in result.output


# ------------------------------------------------------------------ every kind, synthetic sources

KIND_INPUTS = {
    "dwp": "dwp_claimants.csv",
    "council": "council.sqlite",
    "nhs": "nhs",
    "housing": "housing_tenancies.csv",
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from connectors.synth import write_synthetic_sources

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_sources(root, 400, seed=3)
    return root


def _truth(root: Path) -> dict[str, dict[str, str]]:
    with (root / "ground_truth.csv").open() as fh:
        out: dict[str, dict[str, str]] = {}
        for r in csv.DictReader(fh):
            out.setdefault(r["source"], {})[r["local_id"]] = r["person_id"]
        return out


def _check_round_trip(kind: str, input_: str, truth: dict[str, str], out: Path) -> dict:
    from connectors.sources import read_records

    manifest = pseudonymise_extract(keyring(), kind, f"{kind}-synth", input_, None, out)
    c = manifest["counts"]
    assert c["read"] == len(truth) > 0
    assert c["accepted"] + c["rejected"] == c["read"]
    assert c["accepted"] >= 0.95 * c["read"]
    keymap = read_table(out / "keymap.parquet")
    assert len(keymap) == c["accepted"]
    assert {r["local_id"] for r in keymap} <= set(truth)
    # The decrypted content carries exactly the reader's indicators for each accepted record.
    docs = decrypt_rows(keyring().content_key(), manifest["extract_id"], read_table(out / "content.parquet"))
    local_of = {r["ref"]: r["local_id"] for r in keymap}
    expected = {
        rec.identity["local_id"]: sorted(
            (i.code, json.dumps(i.value), i.date.isoformat() if i.date else None) for i in rec.indicators
        )
        for rec in read_records(kind, input_)
    }
    for doc in docs:
        got = sorted((i["code"], json.dumps(i["value"]), i["date"]) for i in doc["indicators"])
        assert got == expected[local_of[doc["ref"]]]
        assert doc["kind"] == kind
    return manifest


@pytest.mark.parametrize("kind", sorted(KIND_INPUTS))
def test_each_kind_round_trips_its_synthetic_source(synthetic, tmp_path, kind):
    _check_round_trip(kind, str(synthetic / KIND_INPUTS[kind]), _truth(synthetic)[kind], tmp_path / kind)


def test_csv_kind_round_trips_the_dwp_file_with_a_mapping(synthetic, tmp_path):
    mapping = tmp_path / "dwp.toml"
    mapping.write_text(
        '[identity]\nlocal_id = "claimant_id"\nnino = "nino"\ngiven_name = "forename"\n'
        'middle_names = "middle_names"\nfamily_name = "surname"\n'
        'date_of_birth = { column = "date_of_birth", format = "%d/%m/%Y" }\nsex = "sex"\n'
        'postcode = "postcode"\naddress = ["address_line_1", "address_line_2"]\nlocality = "town"\n'
    )
    manifest = pseudonymise_extract(keyring(), "csv", "dwp-as-csv", str(synthetic / KIND_INPUTS["dwp"]),
                                     load_mapping(mapping), tmp_path / "csv")
    dwp = pseudonymise_extract(keyring(), "dwp", "dwp", str(synthetic / KIND_INPUTS["dwp"]), None,
                               tmp_path / "dwp")
    assert manifest["counts"] == dwp["counts"]
    # Same identities, same key: the csv kind and the dwp kind give the same tokens.
    from tests.connectors.extract_fixtures import tokens_by_local_id

    a, b = tokens_by_local_id(tmp_path / "csv"), tokens_by_local_id(tmp_path / "dwp")
    assert a.keys() == b.keys()
    assert all(a[k]["tk_nino"] == b[k]["tk_nino"] and a[k]["mk_name_dob"] == b[k]["mk_name_dob"] for k in a)


def test_the_same_person_gets_the_same_tokens_across_agencies(synthetic, tmp_path):
    """Without planted errors, a person's DWP and NHS records agree on name and DOB tokens."""
    from tests.connectors.extract_fixtures import tokens_by_local_id

    truth_rows = list(csv.DictReader((synthetic / "ground_truth.csv").open()))
    clean = {(r["source"], r["local_id"]): r["person_id"] for r in truth_rows if not r["errors"]}
    rows = {}
    for kind in ("dwp", "nhs"):
        pseudonymise_extract(keyring(), kind, kind, str(synthetic / KIND_INPUTS[kind]), None, tmp_path / kind)
        rows[kind] = tokens_by_local_id(tmp_path / kind)
    by_person = {}
    for (source, local_id), pid in clean.items():
        if source in rows and local_id in rows[source]:
            by_person.setdefault(pid, {})[source] = rows[source][local_id]
    pairs = [(p["dwp"], p["nhs"]) for p in by_person.values() if len(p) == 2]
    assert len(pairs) > 30
    agree = sum(a["mk_name_dob"] == b["mk_name_dob"] and a["clk_given"] == b["clk_given"]
                and a["clk_family"] == b["clk_family"] for a, b in pairs)
    assert agree >= 0.95 * len(pairs)


@pytest.mark.postgres
@pytest.mark.slow
def test_council_kind_against_real_postgresql(tmp_path):
    import sqlalchemy as sa

    from connectors.synth import write_synthetic_sources

    script = Path(__file__).parents[2] / "scripts" / "postgres.sh"
    started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
    if started.returncode == 2:
        pytest.skip(f"PostgreSQL server binaries not installed: {started.stderr.strip()}")
    assert started.returncode == 0, started.stderr
    server_dsn = started.stdout.strip()
    # A database of our own, so concurrent council tests cannot drop our tables.
    admin = sa.create_engine(server_dsn.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("select 1 from pg_database where datname = 'joinedup_extract'")).first():
            conn.execute(sa.text("create database joinedup_extract"))
    admin.dispose()
    dsn = server_dsn.rsplit("/", 1)[0] + "/joinedup_extract"
    write_synthetic_sources(tmp_path / "synth", 300, seed=9, council_dsn=dsn)
    truth = _truth(tmp_path / "synth")["council"]
    manifest = _check_round_trip("council", dsn, truth, tmp_path / "out")
    assert "postgres@" not in json.dumps(manifest)  # the DSN is not recorded in the manifest
