"""The bad-input corpus (tests/connectors/bad_inputs.py) through the real `joinedup extract`.

Every case either fails with a clear message naming the file (and the row, where there is
one), exit status non-zero and nothing written; or succeeds with the named rows in
rejects.csv, and the manifest proving that no row went missing: read = accepted + rejected,
with `read` counted here independently of the connector.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from joinedup.home import init_home
from tests.connectors.bad_inputs import CLEAN, MAPPING_TOML, Case, all_cases

JOINEDUP = Path(sys.executable).parent / "joinedup"
SYNTH_PEOPLE = 200  # every agency then holds more than the 50 rows the cases edit


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from connectors.synth import write_synthetic_sources

    root = tmp_path_factory.mktemp("bad-input-base")
    write_synthetic_sources(root, SYNTH_PEOPLE, seed=5, workers=1)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-home") / "home"
    init_home(root, project_id="proj-bad-inputs")
    return root


def extract(home: Path, case: Case, input_: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    args = [str(JOINEDUP), "extract", "--home", str(home), "--kind", case.kind,
            "--source-name", f"bad-{case.kind}", "--input", str(input_), "--out", str(out), *more]
    if case.mapping:
        mapping = out.parent / "mapping.toml"
        mapping.write_text(case.mapping)
        args += ["--mapping", str(mapping)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def rows_in_source(kind: str, input_: Path) -> int:
    """Rows of the input counted without the connector: data lines, Patients or residents."""
    if kind == "council":
        with sqlite3.connect(input_) as db:
            return db.execute("SELECT count(*) FROM residents").fetchone()[0]
    if kind == "nhs":
        return sum(
            1
            for f in sorted(input_.glob("*.json"))
            for e in json.loads(f.read_text())["entry"]
            if isinstance(e, dict) and e["resource"]["resourceType"] == "Patient"
        )
    # The synthetic CSVs hold no line breaks inside fields: one non-blank line, one row.
    lines = input_.read_bytes().decode("utf-8-sig").splitlines()
    return sum(1 for line in lines[1:] if line.strip())


def rejected_rows(out: Path) -> list[dict[str, str]]:
    with (out / "rejects.csv").open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["action"] == "rejected"]


def check_complete(case: Case, input_: Path, out: Path) -> dict:
    """The extract's counts add up, and agree with the input and the files written."""
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["read"] == rows_in_source(case.kind, input_), counts
    assert counts["read"] == counts["accepted"] + counts["rejected"], counts
    rejected = rejected_rows(out)
    assert len({r["row_number"] for r in rejected}) == counts["rejected"]
    keymap = pq.read_table(out / "keymap.parquet").column("local_id").to_pylist()
    assert len(keymap) == counts["accepted"]
    assert len(set(keymap)) == len(keymap), "a local id was accepted twice"
    return counts


_clean_counts: dict[str, dict] = {}


def clean_counts(home: Path, synth: Path, kind: str, tmp: Path) -> dict:
    """The counts of the kind's clean source (the baseline each case is compared with)."""
    if kind not in _clean_counts:
        case = Case(kind, "clean", lambda s, w: s, mapping=MAPPING_TOML if kind == "csv" else None)
        work = tmp / f"clean-{kind}"
        work.mkdir()
        if kind == "csv":
            from tests.connectors.extract_fixtures import person_rows, write_csv

            input_ = write_csv(work / "people.csv", person_rows(60, seed=3))
        else:
            input_ = synth / CLEAN[kind]
        done = extract(home, case, input_, work / "out")
        assert done.returncode == 0, done.stderr
        _clean_counts[kind] = check_complete(case, input_, work / "out")
    return _clean_counts[kind]


def expected_row(case: Case, input_: Path, row: int) -> int:
    if row or "row_of" not in case.extra:
        return row
    with sqlite3.connect(input_) as db:
        person = db.execute(case.extra["row_of"]).fetchone()[0]
        return db.execute("SELECT count(*) FROM residents WHERE person_ref <= ?", (person,)).fetchone()[0]


CASES = all_cases()


def test_the_corpus_covers_every_kind_and_both_outcomes():
    kinds = {c.kind for c in CASES}
    assert kinds == {"dwp", "housing", "csv", "nhs", "council"}
    for kind in kinds:
        assert any(c.error for c in CASES if c.kind == kind), kind
        assert any(c.rejects for c in CASES if c.kind == kind), kind
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.slow  # ~70 runs of the CLI: 1-3 s each
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, synth: Path, home: Path, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    input_ = case.make(synth, work)
    out = tmp_path / "extract"
    done = extract(home, case, input_, out)

    if case.error:
        assert done.returncode != 0, f"expected an error, got: {done.stdout}"
        message = done.stderr
        assert "Traceback" not in message, message
        for phrase in case.error:
            assert phrase in message, f"{phrase!r} not in {message!r}"
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract")]
        return

    assert done.returncode == 0, done.stderr
    counts = check_complete(case, input_, out)
    rejected = rejected_rows(out)
    for row, field, phrase in case.rejects:
        row = expected_row(case, input_, row)
        hits = [r for r in rejected if r["row_number"] == str(row) and r["field"] == field]
        assert hits and phrase in hits[0]["reason"], (row, field, phrase, rejected)
    baseline = clean_counts(home, synth, case.kind, tmp_path)
    assert counts["rejected"] == baseline["rejected"] + len(case.rejects), (counts, baseline)


# A mapping is configuration: a bad one fails on load, naming the file and the key, before
# any row is read (a mistyped date format would otherwise drop every date of birth).
BAD_MAPPINGS = [
    ("unknown-table", "[identiy]\nlocal_id = 'rec_id'\n", "unknown table(s) ['identiy']"),
    ("unknown-field", "[identity]\nshoe_size = 'x'\n", "unknown identity field(s) ['shoe_size']"),
    ("format-not-a-date", "[identity]\ndate_of_birth = { column = 'dob', format = '%d/%m' }\n",
     "does not hold a whole date"),
    ("format-unusable", "[identity]\ndate_of_birth = { column = 'dob', format = '%Q' }\n",
     "not a usable date format"),
    ("format-not-text", "[identity]\ndate_of_birth = { column = 'dob', format = 5 }\n", "strptime format"),
    ("validate-not-bool", "[identity]\npostcode = { column = 'pc', validate = 'no' }\n", "true or false"),
    ("not-toml", "[identity\n", "invalid TOML"),
]


@pytest.mark.parametrize("name, text, phrase", BAD_MAPPINGS, ids=[m[0] for m in BAD_MAPPINGS])
def test_bad_mapping_is_an_error_naming_the_file(name, text, phrase, home: Path, tmp_path: Path):
    from tests.connectors.extract_fixtures import person_rows, write_csv

    input_ = write_csv(tmp_path / "people.csv", person_rows(5))
    case = Case("csv", name, lambda s, w: input_, mapping=text)
    done = extract(home, case, input_, tmp_path / "extract")
    assert done.returncode != 0
    assert "mapping.toml" in done.stderr and phrase in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "extract").exists()


def test_rejects_and_counts_are_the_same_with_two_encoding_workers(synth: Path, home: Path, tmp_path: Path):
    """Reader rejects are written by the main process while workers encode: same outcome."""
    case = next(c for c in CASES if c.id == "dwp-duplicate-local-ids")
    work = tmp_path / "work"
    work.mkdir()
    input_ = case.make(synth, work)
    results = []
    for workers in ("1", "2"):
        out = tmp_path / f"extract-{workers}"
        done = extract(home, case, input_, out, "--workers", workers)
        assert done.returncode == 0, done.stderr
        counts = check_complete(case, input_, out)
        rows = sorted((r["row_number"], r["field"], r["reason"]) for r in rejected_rows(out))
        results.append((counts, rows))
    assert results[0] == results[1]
    assert ("9", "local_id", "duplicate local id (first at row 2)") in results[0][1]
