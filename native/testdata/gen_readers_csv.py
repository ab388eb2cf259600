"""Vectors for native/readers' CSV kinds (csv, dwp, housing): small nasty input files
under readers_csv/, and what the real Python reader makes of each
(connectors.sources.read_batches: batches, rejects and errors, in the order the sink and
the caller see them) in readers_csv_vectors.json. readers/readers_csv_test.go replays them.

Run from the repository root: .venv/bin/python native/testdata/gen_readers_csv.py

Inputs are named relative to native/readers (the Go test's working directory), because
the messages name the file as given.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from connectors.mapping import MappingError, mapping_from_dict  # noqa: E402
from connectors.sources import SourceError, effective_mapping, read_batches  # noqa: E402
from connectors.synth import _chunk  # noqa: E402
from tests.connectors.extract_fixtures import HEADER, person_rows  # noqa: E402

DATA = HERE / "readers_csv"
OUT = HERE / "readers_csv_vectors.json"
REL = "../testdata/readers_csv"  # as the Go test names the files (cwd native/readers)

CSV_MAPPING = {
    "identity": {
        "local_id": "rec_id",
        "given_name": "first",
        "middle_names": "middle",
        "family_name": "surname",
        "date_of_birth": {"column": "dob", "format": "%d/%m/%Y"},
        "nhs_number": "nhs",
        "nino": "ni",
        "sex": "gender",
        "postcode": "pc",
        "address": ["house", "street"],
        "locality": "town",
    }
}

DWP_HEADER = [
    "claimant_id", "nino", "forename", "middle_names", "surname", "date_of_birth", "sex",
    "address_line_1", "address_line_2", "town", "postcode", "benefit_type", "claim_start_date",
    "wca_outcome", "wca_condition_group", "wca_date", "sanctions_12m", "unemployment_spells_5y",
    "months_unemployed", "lone_parent", "skills_need", "extract_date",
]
HOUSING_HEADER = [
    "tenancy_ref", "tenant_forename", "tenant_surname", "tenant_dob", "ni_number", "property_address",
    "postcode", "tenancy_start", "rent_arrears_weeks", "temporary_accommodation", "homelessness_stage",
    "eviction_notice", "last_updated",
]


def line(cells: list[str], end: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=end).writerow(cells)
    return buf.getvalue()


def put(name: str, data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    (DATA / name).write_bytes(data)
    return f"{REL}/{name}"


# ------------------------------------------------------------------ the inputs


def people_csv() -> str:
    rows = person_rows(60, seed=3)
    return "".join([line(HEADER), *(line([r[h] for h in HEADER]) for r in rows)])


def synth_frames() -> tuple[str, str]:
    chunk = _chunk(11, 1000, 0, 0, 1000)
    dwp = chunk["dwp"][0]
    dwp.insert(0, "claimant_id", [f"CLM{i + 1:08d}" for i in range(len(dwp))])
    housing = chunk["housing"][0]
    housing.insert(0, "tenancy_ref", [f"TEN{i + 1:07d}" for i in range(len(housing))])
    return dwp.to_csv(index=False), housing.to_csv(index=False)


def nasty_generic() -> bytes:
    h = ["rec_id", "first", "middle", "surname", "dob", "nhs", "ni", "gender", "pc", "house", "street", "town", "notes"]
    ok = lambda i, **kw: [kw.get(k, v) for k, v in zip(h, [f"R{i}", "Ann", "", "Smith", "01/02/1980", "9434765919",  # noqa: E731
                                                               "AB123456C", "F", "CT1 1AA", "12", "High St", "Kent", ""], strict=False)]
    parts = [
        line(h, "\r\n"),
        line(ok(1), "\r\n"),
        "\r\n",  # blank
        line(ok(2, first="  Bob  ", house="", street="  Mill Lane "), "\n"),
        line(ok(3, first="Zoë", surname="O'Neil", notes="say \"hi\""), "\r"),  # lone CR
        "   \n",  # whitespace only: blank
        '""\n',  # one empty quoted value: blank
        line(ok(4)[:-1], "\n"),  # too few
        line(ok(5) + ["x"], "\n"),  # too many
        line(h, "\n"),  # the header again
        line(ok(6, notes="line one\nline two\r\nline three"), "\n"),  # quoted newlines, a good row
        line(ok(7, first='a"b', surname="\u00a0Lee\u3000", town="\x1cTown\x1f"), "\n"),
        'R8,Jo"e,,Lee,01/02/1980,,,M,CT1 1AA,1,A St,Kent,\n',  # a quote inside an unquoted field
        line(ok(9, house=" ", street=" "), "\n"),  # an address of blanks only: None
        line(ok(1, first="Dup"), "\n"),  # duplicate of row 1
        line(ok(10, first="NUL\x00char", surname="😀Emoji"), "\n"),
        line(ok(11, rec_id=" R1 "), "\n"),  # a duplicate once stripped
        line(ok(12, rec_id=""), "\n"),  # no id: passes
        line(ok(13, rec_id=""), "\n"),
        line(ok(14, rec_id="   "), "\n"),
        line(ok(15, first="Tab\there", middle="\u2003"), "\n"),
        line(ok(16), "\n"),
        line(ok(16, first="Again"), "\n"),
        'R18," x ",""""," ""q"" ",a "b" c,"a""b",,,,,,,\n',  # quotes: inner, doubled, a field of one quote
        line(ok(19, notes="lone\rCR inside"), "\n"),  # a lone CR in a quoted field ends a line
        "\r",  # a blank line of a lone CR
        'R20,A,,B,,,,,,,,,\r\r\n',  # CR CR LF: the row, then a blank line
        line(ok(21), "\n"),
        'R22,"a\rb",,B,,,,,,,,,"c\r"\n',  # quoted lone CRs: lines inside a row
        line(ok(17), ""),  # no newline at the end
    ]
    return ("\ufeff" + "".join(parts)).encode("utf-8")


def identity_named() -> str:
    h = ["given_name", "family_name", "date_of_birth", "postcode", "notes", "address"]
    rows = [["Ann", "Lee", "1980-01-02", "CT1 1AA", "x", "1 A St"], ["", "", "", "", "", ""],
            ["Bob", " Ray ", "1970-01-02", "ct2 2bb", "", ""], ["Cy"], ["Di", "Fox", "", "", "", "9 Z Rd"]]
    return "".join(line(r) for r in [h, *rows])


def dwp_row(i: int, **kw) -> list[str]:
    base = dict(zip(DWP_HEADER, [
        f"CLM{i:08d}", "AB123456C", "Ann", "", "SMITH", "01/02/1980", "F", "1 High St", "", "Margate", "CT9 1AA",
        "UC;PIP", "2024-01-01", "LCW", "mental", "2024-06-01", "1", "2", "12", "N", "digital", "2025-11-01",
    ], strict=True))
    base.update(kw)
    return [base[h] for h in DWP_HEADER]


NUMBERS = [
    "0", "-0", "+5", "007", "1_000", "1__0", "_1", "1_", "٣", "１２", "١.٥", "99999999999999999999999",
    "-99999999999999999999", "9223372036854775807", "9223372036854775808", "1.0", "100.0", "1e5", "1E5",
    "1e16", "1e15", "1e-5", "0.0001", "0.00001", "123456789012345678.5", "1.5e-7", "-0.0", "5e-324",
    "1.7976931348623157e308", ".5", "5.", "1_0.5", "1.5e+3_0", "1_e5", "1e", "e5", ".", "-", "0x10",
    "0x1p3", "inf", "-Infinity", "nan", "NaN", "1e400", "-1e400", "1e-400", "0e99999", "1 2",
    "1" * 4301, "0" * 4301, "lots", " 7 ", "\u00a03\u00a0", "12.50", "0.1", "2.675", "1/2", "१२३",
    "\U0001d7d9", "𑽒", "３.５e２",
]
DATES = [
    "2020-01-02", "20200102", "2020-W01-1", "2020W011", "2020-W01", "2020W01", "2020-1-2", "２０２０-01-02",
    "2020-01-02T00", "2020-02-30", "2020-02-29", "2021-02-29", "0000-01-01", "0001-01-01", "9999-12-31",
    "20200102xy", "2020W011xy", "20200102é", "2020-W53-1", "2021-W53", "2020-W00-1", "2020-W01-8",
    "0000-W52-7", "9999-W52-7", "9999-W01-1", "2020-0102", " 2020-01-02 ", "2020-13-01", "2020-00-10", "garbage",
    "2020-01-00", "1999-12-31",
]
YESNO = ["Y", "y", " yes ", "TRUE", "true", "1", "N", "no", "False", "0", "", "yeſ", "falſe", "maybe", "ｙ", "2", "Ja"]


def dwp_nasty() -> tuple[str, str]:
    """A DWP file exercising every indicator value path; returns (text, the ids)."""
    rows = []
    i = 0
    for v in NUMBERS:
        i += 1
        rows.append(dwp_row(i, sanctions_12m=v))
    for v in NUMBERS[:12]:
        i += 1
        rows.append(dwp_row(i, months_unemployed=v, unemployment_spells_5y=""))
    for v in DATES:
        i += 1
        rows.append(dwp_row(i, extract_date=v))
        i += 1
        rows.append(dwp_row(i, claim_start_date=v, wca_date=""))
    for v in YESNO:
        i += 1
        rows.append(dwp_row(i, lone_parent=v))
    for kw in (
        dict(benefit_type=" UC ;; PIP;", wca_outcome="", wca_condition_group=""),
        dict(benefit_type="", claim_start_date="", wca_date="", extract_date=""),
        dict(benefit_type=";", skills_need='quote " back \\ slash / tab\t nl\n', wca_outcome="é😀\u2028\x7f\x01"),
        dict(wca_condition_group="\u0000", skills_need="  ", sanctions_12m="", unemployment_spells_5y="",
             months_unemployed="", lone_parent=""),
        dict(extract_date="bad", sanctions_12m="bad", lone_parent="bad"),  # the first refusal wins
        dict(sanctions_12m="bad", lone_parent="bad"),
        dict(claimant_id="CLM00000001"),  # a duplicate id
        dict(forename="  ", surname="\t", nino="", address_line_1="", address_line_2="Flat 2"),
        dict(address_line_1=" 3 Low Rd ", address_line_2=" Top "),
    ):
        i += 1
        rows.append(dwp_row(i, **kw))
    return "".join(line(r) for r in [DWP_HEADER, *rows])


def housing_row(i: int, **kw) -> list[str]:
    base = dict(zip(HOUSING_HEADER, [
        f"TEN{i:07d}", "Ann", "Lee", "01/02/1980", "", "1 High St, Margate", "CT9 1AA", "2020-01-01", "2.5", "N",
        "", "", "2025-10-01",
    ], strict=True))
    base.update(kw)
    return [base[h] for h in HOUSING_HEADER]


def housing_nasty() -> str:
    rows = []
    i = 0
    for v in NUMBERS:
        i += 1
        rows.append(housing_row(i, rent_arrears_weeks=v))
    for v in YESNO:
        i += 1
        rows.append(housing_row(i, temporary_accommodation=v, homelessness_stage="relief", eviction_notice="s21"))
    for v in DATES[:10]:
        i += 1
        rows.append(housing_row(i, last_updated=v))
    rows.append(housing_row(i + 1, tenancy_ref="TEN0000001"))
    return "".join(line(r) for r in [HOUSING_HEADER, *rows])


def all_bad_chunk() -> str:
    """DWP rows 1-3 all refused (an empty batch at size 3), rows 4-6 duplicates of 7."""
    rows = [dwp_row(i, sanctions_12m="x") for i in (1, 2, 3)]
    rows += [dwp_row(7), dwp_row(7), dwp_row(7), dwp_row(7), dwp_row(8)]
    return "".join(line(r) for r in [DWP_HEADER, *rows])


def latin1_deep(text: str, row: int, after_bad_rows: int) -> bytes:
    lines = text.encode("utf-8").split(b"\n")
    lines[row] = lines[row].replace(b",", b",\xe9", 3)  # into the 3rd column
    for k in range(1, after_bad_rows + 1):
        lines[row + k] = lines[row + k] + b",extra"  # wrong width: rejected before the error
    return b"\n".join(lines)


# ------------------------------------------------------------------ the cases


def cases() -> list[dict]:
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    people = people_csv()
    dwp_text, housing_text = synth_frames()
    out: list[tuple] = []  # (name, kind, input, override dict or None, sizes)

    def add(name, kind, path, override=None, sizes=(1000,)):
        out.append((name, kind, path, override, sizes))

    p = put("people.csv", people)
    add("csv-people-mapping", "csv", p, CSV_MAPPING, (7, 1000))
    add("csv-people-no-mapping", "csv", p)
    add("csv-people-path-normalised", "csv", f"{REL}//./people.csv/", CSV_MAPPING)
    add("csv-people-override-multi", "csv", p, {"identity": {
        "local_id": "rec_id", "given_name": ["first", "middle"], "address": ["house", "street", "town", "pc"],
        "family_name": {"columns": ["surname", "notes"]}, "locality": "notes"}}, (25,))
    add("csv-people-missing-mapped", "csv", p, {"identity": {"given_name": "firstname", "address": ["house", "road", "flat"]}})
    add("csv-nasty", "csv", put("nasty.csv", nasty_generic()), CSV_MAPPING, (0, 1, 3, 1000))
    add("csv-identity-named", "csv", put("identity_named.csv", identity_named()), None, (2, 100))
    add("csv-one-identity-column", "csv", put("one_identity.csv", "postcode,notes\nCT1 1AA,x\n"))
    add("csv-width-one", "csv", put("width_one.csv", "given_name\nAnn\n\n   \n\"\"\nBob\n\"x,y\"\n"),
        {"identity": {"given_name": "given_name", "family_name": "given_name"}}, (2, 100))
    add("csv-empty", "csv", put("empty.csv", b""), CSV_MAPPING)
    add("csv-bom-only", "csv", put("bom_only.csv", b"\xef\xbb\xbf"), CSV_MAPPING)
    add("csv-header-only", "csv", put("header_only.csv", line(HEADER)), CSV_MAPPING)
    add("csv-header-only-no-newline", "csv", put("header_only2.csv", ",".join(HEADER)), CSV_MAPPING)
    add("csv-blank-first-line", "csv", put("blank_first.csv", "\n" + people), CSV_MAPPING)
    add("csv-blank-header", "csv", put("blank_header.csv", " , ,\nA,B,C\n"), CSV_MAPPING)
    add("csv-header-spans", "csv", put("header_spans.csv", 'rec_id,"fi\nrst",surname\nR1,A,B\n'), CSV_MAPPING)
    add("csv-header-unterminated", "csv", put("header_unterminated.csv", 'rec_id,"first,surname\nR1,A,B\n'), CSV_MAPPING)
    add("csv-header-bad-quote", "csv", put("header_bad_quote.csv", 'rec_id,"first"x,surname\nR1,A,B\n'), CSV_MAPPING)
    add("csv-header-not-utf8", "csv", put("header_latin1.csv", b"rec_id,pr\xe9nom,surname\nR1,A,B\n"), CSV_MAPPING)
    add("csv-header-unnamed", "csv", put("header_unnamed.csv", "rec_id,, first ,\t\nR1,,A,\n"), CSV_MAPPING)
    add("csv-header-duplicates", "csv", put("header_dup.csv", "rec_id, first,first ,x,first,x,it's,it's,a\tb,a\tb,\u00e9\u200b,\u00e9\u200b\nR1,A,B,C,D,E,F,G,H,I,J,K\n"),
        CSV_MAPPING)
    add("csv-header-stripped-names", "csv", put("header_spaces.csv", " rec_id , first\u3000,surname\nR1,Ann,Lee\n"),
        {"identity": {"local_id": "rec_id", "given_name": "first", "family_name": "surname"}})
    add("csv-missing-file", "csv", f"{REL}/no_such_file.csv", CSV_MAPPING)
    add("csv-directory", "csv", f"{REL}/", CSV_MAPPING)
    add("csv-not-a-directory", "csv", f"{REL}/people.csv/x.csv", CSV_MAPPING)
    lines = people.splitlines(keepends=True)
    add("csv-unterminated-quote", "csv", put("unterminated.csv", "".join(
        [*lines[:40], lines[40].replace(",", ',"', 1), *[x.replace('"', "") for x in lines[41:]]])), CSV_MAPPING, (10, 1000))
    add("csv-unterminated-quote-last-line", "csv", put("unterminated_last.csv", "".join(lines[:5]) + 'R9,"Ann'),
        CSV_MAPPING, (2,))
    add("csv-bad-quoting", "csv", put("bad_quoting.csv", "".join([*lines[:7], lines[7].replace(",", ',"ab"c,', 1), *lines[8:]])),
        CSV_MAPPING, (3, 1000))
    add("csv-bad-quoting-spanning", "csv", put("bad_quoting_span.csv", "".join(
        [*lines[:4], lines[4].replace(",", ',"a\nb\n"c,', 1), *lines[5:]])), CSV_MAPPING)
    add("csv-quoted-span-wrong-width", "csv", put("span_width.csv", "".join(
        [*lines[:9], lines[9].rstrip("\n") + ',"one\ntwo\nthree"\n', *lines[10:]])), CSV_MAPPING, (4, 1000))
    add("csv-latin1-deep", "csv", put("latin1_deep.csv", latin1_deep(people, 45, 3)), CSV_MAPPING, (10, 50, 1000))
    add("csv-latin1-in-rejected-row", "csv", put("latin1_rejected.csv", b"".join(
        [*(x.encode() for x in lines[:3]), lines[3].encode().replace(b"\n", b",\xff\xfe\n"), *(x.encode() for x in lines[4:])])),
        CSV_MAPPING)
    add("csv-latin1-truncated-sequence", "csv", put("latin1_trunc.csv", b"".join(
        [*(x.encode() for x in lines[:3]), lines[3].encode().replace(b",", b",\xe2\x82", 1), *(x.encode() for x in lines[4:])])),
        CSV_MAPPING)
    big = "x" * 131000 + "é" * 100  # 131100 characters, 131200 bytes
    add("csv-field-limit-data", "csv", put("field_limit.csv", "".join(lines[:3]) + 'R7,"' + big + '\n' + "".join(
        x.replace('"', "") for x in lines[3:6])), CSV_MAPPING)
    # Exactly at the limit in characters (more in bytes): read.
    add("csv-field-at-limit", "csv", put("field_at_limit.csv", line(["rec_id", "first", "notes"])
                                          + line(["R1", "A", "y" * 131000 + "é" * 72]) + line(["R2", "z", ""])),
        {"identity": {"local_id": "rec_id", "given_name": "first"}})

    # DWP
    p = put("dwp_synth.csv", dwp_text)
    add("dwp-synth", "dwp", p, None, (100,))
    add("dwp-synth-override", "dwp", p, {"identity": {
        "address": ["address_line_1", "address_line_2", "town", "postcode"], "given_name": ["forename", "middle_names"],
        "sex": {"column": "sex", "validate": False}}}, (64,))
    add("dwp-synth-missing-mapped", "dwp", p, {"identity": {"nhs_number": "nhs_no"}})
    dl = dwp_text.splitlines(keepends=True)
    k = dl[0].split(",").index("wca_outcome")
    add("dwp-missing-indicator-columns", "dwp", put("dwp_missing_ind.csv", "".join(
        ",".join(c for j, c in enumerate(x.rstrip("\n").split(",")) if j not in (k, k + 3)) + "\n" for x in dl[:20])))
    add("dwp-missing-identity-column", "dwp", put("dwp_missing_id.csv", "".join(
        ",".join(x.rstrip("\n").split(",")[1:]) + "\n" for x in dl[:20])))
    add("dwp-nasty", "dwp", put("dwp_nasty.csv", dwp_nasty()), None, (16, 1000))
    add("dwp-all-bad-chunk", "dwp", put("dwp_all_bad.csv", all_bad_chunk()), None, (1, 3, 1000))
    add("dwp-latin1-deep", "dwp", put("dwp_latin1.csv", latin1_deep("".join(dl[:80]), 30, 2)), None, (20, 1000))
    add("dwp-repeated-header-and-blank", "dwp", put("dwp_joined.csv", "".join([*dl[:20], "\n", dl[0], *dl[20:40], "\r\n"])),
        None, (7,))

    # housing
    p = put("housing_synth.csv", housing_text)
    add("housing-synth", "housing", p, None, (50,))
    add("housing-nasty", "housing", put("housing_nasty.csv", housing_nasty()), None, (9, 1000))
    add("housing-not-housing", "housing", put("housing_wrong.csv", "".join(dl[:5])))
    add("housing-bom-crlf", "housing", put("housing_bom_crlf.csv", "\ufeff" + housing_text.replace("\n", "\r\n")), None, (33,))
    return out


def run(kind: str, path: str, override: dict | None, size: int) -> tuple[dict, list[dict]]:
    events: list[dict] = []

    def sink(r) -> None:
        events.append({"reject": [r.row_number, r.field, r.reason]})

    mapping = effective_mapping(kind, mapping_from_dict(override) if override else None)
    try:
        for numbers, columns, indicators in read_batches(kind, path, mapping, size, sink):
            events.append({"batch": {"rows": numbers, "columns": columns, "indicators": indicators}})
    except SourceError as exc:
        events.append({"error": {"type": "source", "message": str(exc)}})
    except MappingError as exc:
        events.append({"error": {"type": "mapping", "message": str(exc)}})
    spec = {name: {"columns": list(s.columns), "format": s.format, "validate": s.validate}
            for name, s in mapping.identity.items()}
    return spec, events


def indicator_cases() -> list[dict]:
    """IndicatorsJSON against connectors.content.indicators_json: values typed for the
    trip through JSON (floats as their IEEE bits)."""
    import random
    import struct
    from datetime import date

    from connectors.content import indicators_json
    from connectors.records import Indicator

    rng = random.Random(5)
    floats = [0.0, -0.0, 1.0, 100.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.1, 2.675, 1 / 3, -1.5e-7,
              5e-324, 1.7976931348623157e308, 123456789012345678.0, 12.5, 0.30000000000000004,
              float("inf"), float("-inf"), float("nan")]
    floats += [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(300)]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(100)] + [round(rng.uniform(0, 100), 1) for _ in range(50)]
    floats += [10.0 ** e for e in range(-30, 30)] + [1.5 * 10.0 ** e for e in range(-30, 30)]
    strings = ["", "plain", 'q"uote', "back\\slash", "/", "\x00\x01\x1f\x7f\x80", "\b\f\n\r\t", "é", "\u2028\u2029",
               "😀", "\U0010ffff", "\ufeff", "a\u0300", "日本語"]
    cases = []
    for k, f in enumerate(floats):
        cases.append([("dwp.x", ("float", struct.pack("<d", f).hex()), date(2020, 1, 2) if k % 2 else None)])
    for s in strings:
        cases.append([(s, ("str", s), None), ("c", ("str", s), date(1, 1, 1))])
    for n in (0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**40):
        cases.append([("n", ("int", str(n)), date(9999, 12, 31))])
    cases.append([("b", ("bool", True), None), ("b", ("bool", False), None), ("z", ("none", None), date(2024, 2, 29))])
    cases.append([])
    out = []
    for inds in cases:
        objs = []
        for code, (t, v), d in inds:
            value = {"float": lambda v: struct.unpack("<d", bytes.fromhex(v))[0], "str": str, "int": int,
                     "bool": bool, "none": lambda v: None}[t](v)
            objs.append(Indicator(code, value, d))
        expect = indicators_json(objs)
        assert expect == json.dumps([{"code": i.code, "value": i.value, "date": i.date.isoformat() if i.date else None}
                                     for i in objs], separators=(",", ":"), sort_keys=True)
        out.append({"indicators": [{"code": c, "type": t, "value": v, "date": d.isoformat() if d else None}
                                   for c, (t, v), d in inds], "json": expect})
    return out


def unique_cases() -> list[dict]:
    """connectors.sources._unique_batch on crafted batches (ids a reader might not strip,
    None, "", blanks, repeats within and across batches)."""
    from connectors.sources import DuplicateIds, _unique_batch

    runs = [
        [["A", "B", "C"], ["D", "A", "E"], ["F"]],
        [[" A", "B"], ["A", "B "], ["A"], [" A"]],
        [["A", None, "B"], ["B", "C"], ["C ", "  "], ["", "D"], ["D", "D"]],
        [["X", "X", "Y"], ["Y", " X"], ["Z"], []],
        [["  ", "  "], ["q", "q ", " q"], ["q"]],
    ]
    out = []
    for run in runs:
        rejects = []
        ids = DuplicateIds(lambda r: rejects.append([r.row_number, r.field, r.reason]))  # noqa: B023 (used in this pass)
        row = 0
        batches = []
        for local_ids in run:
            numbers = list(range(row + 1, row + 1 + len(local_ids)))
            row += len(local_ids)
            kept, columns, _ = _unique_batch(numbers, {"local_id": list(local_ids)}, None, ids)
            batches.append({"local_ids": local_ids, "kept": kept, "rejects_so_far": len(rejects)})
        out.append({"batches": batches, "rejects": rejects})
    return out


def main() -> None:
    os.chdir(HERE.parent / "readers")
    vectors = []
    for name, kind, path, override, sizes in cases():
        for size in sizes:
            spec, events = run(kind, path, override, size)
            vectors.append({"name": f"{name}/size={size}", "kind": kind, "input": path, "mapping": spec,
                            "size": size, "events": events})
    OUT.write_text(json.dumps({"cases": vectors, "indicators": indicator_cases(), "unique": unique_cases()}, indent=None, separators=(",", ":")) + "\n")
    total = sum(f.stat().st_size for f in DATA.iterdir()) + OUT.stat().st_size
    print(f"{len(vectors)} cases, {total / 1e6:.2f} MB of test data")


if __name__ == "__main__":
    main()
