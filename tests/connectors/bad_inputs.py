"""A corpus of bad inputs for every connector kind, generated from clean synthetic sources.

Each `Case` takes a clean source of its kind, breaks it in one way and says what the
connector must do: fail with a clear error (`error`: phrases the message must hold, the
file and the row among them), or read the input and reject named rows (`rejects`: row
number, field and a phrase of the reason). The cases are data; tests/connectors/
test_bad_inputs.py runs each through the real `joinedup extract` command.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.connectors.extract_fixtures import MAPPING_TOML, person_rows, write_csv

# File names of the clean sources in the synthetic directory.
CLEAN = {"dwp": "dwp_claimants.csv", "housing": "housing_tenancies.csv", "council": "council.sqlite",
         "nhs": "nhs"}


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    make: Callable[[Path, Path], Path]  # (clean synthetic dir, work dir) -> input path
    error: tuple[str, ...] = ()  # the command fails; its message holds each phrase
    rejects: tuple[tuple[int, str, str], ...] = ()  # (row, field, reason phrase) in rejects.csv
    mapping: str | None = None  # TOML mapping for the csv kind
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


# ------------------------------------------------------------------ CSV helpers


def _csv_base(kind: str, synth: Path, work: Path) -> Path:
    """The clean CSV of a kind copied into `work` (the csv kind: a generic file with a mapping)."""
    if kind == "csv":
        return write_csv(work / "people.csv", person_rows(60, seed=3))
    return Path(shutil.copy(synth / CLEAN[kind], work / CLEAN[kind]))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def csv_edit(kind: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path, Path], Path]:
    """A builder: the kind's clean CSV with `edit` applied to its lines (line 0 is the header)."""

    def make(synth: Path, work: Path) -> Path:
        path = _csv_base(kind, synth, work)
        return _write_lines(path, edit(_lines(path)))

    return make


def csv_bytes(kind: str, edit: Callable[[bytes], bytes]) -> Callable[[Path, Path], Path]:
    def make(synth: Path, work: Path) -> Path:
        path = _csv_base(kind, synth, work)
        path.write_bytes(edit(path.read_bytes()))
        return path

    return make


def _cells(line: str) -> list[str]:
    import csv

    return next(csv.reader([line]))


def _join(cells: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def set_cell(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """Row `row` (1-based data row) with `column` set to `value`, written as proper CSV."""
    header = _cells(lines[0])
    cells = _cells(lines[row])
    cells[header.index(column)] = value
    out = list(lines)
    out[row] = _join(cells)
    return out


def cell(lines: list[str], row: int, column: str) -> str:
    return _cells(lines[row])[_cells(lines[0]).index(column)]


def rename_column(lines: list[str], column: str, new: str) -> list[str]:
    header = _cells(lines[0])
    header[header.index(column)] = new
    return [_join(header), *lines[1:]]


def drop_column(lines: list[str], column: str) -> list[str]:
    k = _cells(lines[0]).index(column)
    return [_join([c for j, c in enumerate(_cells(line)) if j != k]) for line in lines]


# Each CSV kind's id column and a name column (the csv kind: its mapping's columns).
ID_COLUMN = {"dwp": "claimant_id", "housing": "tenancy_ref", "csv": "rec_id"}
NAME_COLUMN = {"dwp": "forename", "housing": "tenant_forename", "csv": "first"}


def unterminated_quote(lines: list[str], row: int, column: str) -> list[str]:
    """An opening quote that is never closed, in `column` of `row`: the rest of the file
    would be one field to a lenient reader."""
    header = _cells(lines[0])
    cells = _cells(lines[row])
    k = header.index(column)
    line = ",".join(cells[:k]) + ',"' + cells[k] + "," + ",".join(cells[k + 1 :]) + "\n"
    # Later rows must hold no quote that could close it: strip quoting from them.
    rest = [",".join(c.replace('"', "").replace(",", " ") for c in _cells(x)) + "\n" for x in lines[row + 1 :]]
    return [*lines[:row], line, *rest]


def csv_cases(kind: str) -> list[Case]:
    mapping = MAPPING_TOML if kind == "csv" else None
    ident, name = ID_COLUMN[kind], NAME_COLUMN[kind]
    file = "people.csv" if kind == "csv" else CLEAN[kind]
    cases = [
        Case(kind, "unterminated-quote", csv_edit(kind, lambda ls: unterminated_quote(ls, 40, name)),
             error=(file, "row 40 (line 41)", "unterminated quote")),
        Case(kind, "bad-quoting", csv_edit(kind, lambda ls: [*ls[:7], ls[7].replace(",", ',"ab"c,', 1), *ls[8:]]),
             error=(file, "row 7 (line 8)", "malformed CSV")),
        Case(kind, "duplicated-header-column", csv_edit(kind, lambda ls: rename_column(ls, name, ident)),
             error=(file, "duplicate column name", repr(ident))),
        Case(kind, "header-repeated-in-the-data", csv_edit(kind, lambda ls: [*ls[:20], ls[0], *ls[20:]]),
             rejects=((20, "(row)", "repeats the header row"),)),
        Case(kind, "wrong-column-count",
             csv_edit(kind, lambda ls: [*ls[:3], ls[3].rstrip("\n").rsplit(",", 1)[0] + "\n", *ls[4:9],
                                        ls[9].rstrip("\n") + ",extra\n", *ls[10:]]),
             rejects=((3, "(row)", "the header has"), (9, "(row)", "the header has"))),
        Case(kind, "latin-1-bytes-deep-in-the-file",
             csv_bytes(kind, lambda b: _latin1_in_row(b, 45)),
             error=(file, "row 45 (line 46)", "not UTF-8", "Latin-1")),
        Case(kind, "empty-file", csv_bytes(kind, lambda b: b""), error=(file, "empty file")),
        Case(kind, "header-only", csv_bytes(kind, lambda b: b.split(b"\n", 1)[0] + b"\n")),
        Case(kind, "blank-lines-are-not-rows", csv_edit(kind, lambda ls: [*ls[:5], "\n", "\n", *ls[5:], "\n"])),
        Case(kind, "duplicate-local-ids",
             csv_edit(kind, lambda ls: set_cell(set_cell(ls, 9, ident, cell(ls, 2, ident)), 30, ident, cell(ls, 2, ident))),
             rejects=((9, "local_id", "duplicate local id (first at row 2)"),
                      (30, "local_id", "duplicate local id (first at row 2)"))),
        Case(kind, "missing-mapped-column", csv_edit(kind, lambda ls: drop_column(ls, name)),
             error=(file, name)),
        Case(kind, "byte-order-mark-is-fine", csv_bytes(kind, lambda b: b"\xef\xbb\xbf" + b)),
    ]
    if kind == "dwp":
        cases += [
            Case(kind, "count-that-is-not-a-number", csv_edit(kind, lambda ls: set_cell(ls, 12, "sanctions_12m", "lots"))
                 , rejects=((12, "sanctions_12m", "not a number"),)),
            Case(kind, "date-that-is-not-a-date", csv_edit(kind, lambda ls: set_cell(ls, 13, "extract_date", "2025-13-45")),
                 rejects=((13, "extract_date", "not a date"),)),
            Case(kind, "yes-no-that-is-neither", csv_edit(kind, lambda ls: set_cell(ls, 14, "lone_parent", "maybe")),
                 rejects=((14, "lone_parent", "yes/no"),)),
            Case(kind, "missing-indicator-column", csv_edit(kind, lambda ls: drop_column(ls, "wca_outcome")),
                 error=(file, "missing column(s) wca_outcome")),
        ]
    if kind == "housing":
        cases += [
            Case(kind, "arrears-that-are-not-a-number",
                 csv_edit(kind, lambda ls: set_cell(ls, 6, "rent_arrears_weeks", "n/a")),
                 rejects=((6, "rent_arrears_weeks", "not a number"),)),
            Case(kind, "arrears-infinite", csv_edit(kind, lambda ls: set_cell(ls, 7, "rent_arrears_weeks", "inf")),
                 rejects=((7, "rent_arrears_weeks", "finite"),)),
            Case(kind, "temporary-accommodation-neither-yes-nor-no",
                 csv_edit(kind, lambda ls: set_cell(ls, 8, "temporary_accommodation", "perhaps")),
                 rejects=((8, "temporary_accommodation", "yes/no"),)),
        ]
    return [Case(c.kind, c.name, c.make, c.error, c.rejects, mapping, c.extra) for c in cases]


def _latin1_in_row(data: bytes, row: int) -> bytes:
    """The name in data row `row` re-spelt with an accent encoded as Latin-1 (one byte 0xE9),
    far enough into the file that a text decoder reads past it in an earlier buffer."""
    lines = data.split(b"\n")
    first_comma = lines[row].index(b",")
    second = lines[row].index(b",", first_comma + 1)
    lines[row] = lines[row][: second] + b"\xe9" + lines[row][second:]
    return b"\n".join(lines)


# ------------------------------------------------------------------ FHIR (nhs)


def nhs_edit(edit: Callable[[dict], None], name: str = "bundle-00001.json") -> Callable[[Path, Path], Path]:
    """A builder: the clean Bundle directory with `edit` applied to the first Bundle."""

    def make(synth: Path, work: Path) -> Path:
        out = work / "nhs"
        shutil.copytree(synth / CLEAN["nhs"], out)
        path = sorted(out.glob("*.json"))[0]
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
        return out

    return make


def nhs_raw(text: str) -> Callable[[Path, Path], Path]:
    def make(synth: Path, work: Path) -> Path:
        out = work / "nhs"
        out.mkdir()
        (out / "bundle-00001.json").write_text(text)
        return out

    return make


def patient(doc: dict, n: int) -> dict:
    """The n-th (1-based) Patient resource of a Bundle."""
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"][n - 1]


def _set(n: int, path: tuple, value: Any) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        target = patient(doc, n)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _first_given_as_string(n: int) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        name = patient(doc, n)["name"][0]
        name["given"] = name["given"][0]

    return edit


def _duplicate_patient_id(doc: dict) -> None:
    patient(doc, 7)["id"] = patient(doc, 3)["id"]


def _evidence_of(doc: dict, n: int, resource_type: str) -> dict:
    """A resource of `resource_type` pointing at Patient n (one is added when none does)."""
    pid = patient(doc, n)["id"]
    for e in doc["entry"]:
        r = e["resource"]
        ref = (r.get("patient") or r.get("subject") or {}).get("reference", "")
        if r["resourceType"] == resource_type and ref.endswith(pid):
            return r
    r = {"resourceType": resource_type, "id": f"x-{pid}", "status": "active"}
    r["patient" if resource_type == "EpisodeOfCare" else "subject"] = {"reference": f"urn:uuid:{pid}"}
    doc["entry"].append({"fullUrl": f"urn:uuid:x-{pid}", "resource": r})
    return r


def _condition_code_as_string(doc: dict) -> None:
    _evidence_of(doc, 5, "Condition")["code"] = "diabetes"


def _episode_period_as_string(doc: dict) -> None:
    _evidence_of(doc, 6, "EpisodeOfCare")["period"] = "2024-01-01/2024-06-01"


def _entry_not_an_object(doc: dict) -> None:
    doc["entry"].insert(3, "Patient/123")


def _reference_not_an_object(doc: dict) -> None:
    _evidence_of(doc, 4, "Condition")["subject"] = "Patient/abc"


NHS_CASES = [
    Case("nhs", "given-written-as-a-string", nhs_edit(_first_given_as_string(2)),
         rejects=((2, "Patient.name[0].given", "must be a list, not a string"),)),
    Case("nhs", "family-as-a-list", nhs_edit(_set(3, ("name", 0, "family"), ["Smith"])),
         rejects=((3, "Patient.name[0].family", "must be a string, not a list"),)),
    Case("nhs", "birth-date-as-a-number", nhs_edit(_set(4, ("birthDate",), 19800101)),
         rejects=((4, "Patient.birthDate", "must be a string, not a number"),)),
    Case("nhs", "identifier-not-a-list", nhs_edit(_set(5, ("identifier",), {"system": "x", "value": "1"})),
         rejects=((5, "Patient.identifier", "must be a list, not an object"),)),
    Case("nhs", "address-line-as-a-string", nhs_edit(_set(6, ("address", 0, "line"), "1 High Street")),
         rejects=((6, "Patient.address[0].line", "must be a list, not a string"),)),
    Case("nhs", "patient-id-as-a-number", nhs_edit(_set(8, ("id",), 12345)),
         rejects=((8, "Patient.id", "must be a string, not a number"),)),
    Case("nhs", "duplicate-patient-ids", nhs_edit(_duplicate_patient_id),
         rejects=((7, "local_id", "duplicate local id (first at row 3)"),)),
    Case("nhs", "condition-code-as-a-string", nhs_edit(_condition_code_as_string),
         rejects=((5, "Condition.code", "must be an object, not a string"),)),
    Case("nhs", "episode-period-as-a-string", nhs_edit(_episode_period_as_string),
         rejects=((6, "EpisodeOfCare.period", "must be an object, not a string"),)),
    Case("nhs", "entry-not-an-object", nhs_edit(_entry_not_an_object),
         error=("bundle-00001.json", "entry 4", "must be an object")),
    Case("nhs", "reference-not-an-object", nhs_edit(_reference_not_an_object),
         error=("bundle-00001.json", "Condition.subject", "must be an object")),
    Case("nhs", "nested-100k-deep",
         nhs_raw('{"resourceType": "Bundle", "type": "collection", "entry": [' + "[" * 100_000 + "]" * 100_000 + "]}"),
         error=("bundle-00001.json", "nested too deeply")),
    Case("nhs", "truncated-json", nhs_raw('{"resourceType": "Bundle", "entry": [{"resource": {'),
         error=("bundle-00001.json", "not valid JSON")),
    Case("nhs", "a-patient-not-a-bundle", nhs_raw('{"resourceType": "Patient", "id": "p1"}'),
         error=("bundle-00001.json", "not a FHIR Bundle")),
    Case("nhs", "entry-not-a-list", nhs_raw('{"resourceType": "Bundle", "entry": {"resource": {}}}'),
         error=("bundle-00001.json", "Bundle.entry is not a list")),
]


# ------------------------------------------------------------------ council (SQLite)


def council_edit(*statements: str) -> Callable[[Path, Path], Path]:
    """A builder: the clean council database with SQL `statements` run on it."""

    def make(synth: Path, work: Path) -> Path:
        path = Path(shutil.copy(synth / CLEAN["council"], work / CLEAN["council"]))
        with sqlite3.connect(path) as db:
            for sql in statements:
                db.execute(sql)
        return path

    return make


def _nth_person(n: int) -> str:
    """SQL for the person_ref of the n-th resident in person_ref order (the reader's row n)."""
    return f"(SELECT person_ref FROM residents ORDER BY person_ref LIMIT 1 OFFSET {n - 1})"


_RESIDENTS_WITHOUT_KEY = (
    "CREATE TABLE r2 AS SELECT * FROM residents",
    "DROP TABLE residents",
    "ALTER TABLE r2 RENAME TO residents",
)

COUNCIL_CASES = [
    Case("council", "forename-stored-as-bytes",
         council_edit(f"UPDATE residents SET forename = x'4a6f686e' WHERE person_ref = {_nth_person(4)}"),
         rejects=((4, "residents.forename", "stored as bytes"),)),
    Case("council", "surname-not-utf8",
         council_edit(f"UPDATE residents SET surname = CAST(x'4dfc6c6c6572' AS TEXT) WHERE person_ref = {_nth_person(5)}"),
         rejects=((5, "residents.surname", "not UTF-8"),)),
    Case("council", "duplicate-person-refs",
         council_edit(*_RESIDENTS_WITHOUT_KEY,
                      "INSERT INTO residents SELECT * FROM residents WHERE person_ref = "
                      "(SELECT person_ref FROM residents ORDER BY person_ref LIMIT 1 OFFSET 2)"),
         rejects=((4, "local_id", "duplicate local id (first at row 3)"),)),
    # Row 0 in `rejects`: the resident named by extra["row_of"] (a query for a person_ref).
    Case("council", "arrears-that-are-text",
         council_edit("UPDATE ctax_accounts SET ctax_arrears_gbp = 'lots' "
                      "WHERE person_ref = (SELECT min(person_ref) FROM ctax_accounts)"),
         rejects=((0, "ctax_accounts.ctax_arrears_gbp", "wrong type"),),
         extra={"row_of": "SELECT min(person_ref) FROM ctax_accounts"}),
    Case("council", "care-leaver-date-malformed",
         council_edit("UPDATE care_leavers SET recorded_on = '2024-02-30' "
                      "WHERE person_ref = (SELECT min(person_ref) FROM care_leavers)"),
         rejects=((0, "care_leavers.recorded_on", "wrong type"),),
         extra={"row_of": "SELECT min(person_ref) FROM care_leavers"}),
    Case("council", "missing-service-table", council_edit("DROP TABLE care_leavers"),
         error=("council.sqlite", "missing table(s) care_leavers")),
    Case("council", "residents-without-a-mapped-column", council_edit("ALTER TABLE residents DROP COLUMN surname"),
         error=("council.sqlite", "surname")),
    Case("council", "not-a-database", lambda synth, work: _write(work / "council.sqlite", b"SQLite format 2\0garbage"),
         error=("council.sqlite",)),
    Case("council", "no-residents", council_edit("DELETE FROM residents")),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def all_cases() -> list[Case]:
    return [*csv_cases("dwp"), *csv_cases("housing"), *csv_cases("csv"), *NHS_CASES, *COUNCIL_CASES]
