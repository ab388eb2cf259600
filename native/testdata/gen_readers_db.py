"""Test vectors for the native council and NHS readers (native/readers/council*.go, nhs*.go).

Makes small nasty inputs under native/testdata/readers_db/ (a clean synthetic council
database and Bundle directory, then broken copies: wrong types, nulls, missing tables and
columns, malformed JSON and UTF-8, duplicate ids, unicode, mapping overrides), runs the
real `connectors.sources.read_batches` on each, and writes what it yields and refuses, in
order, to native/testdata/readers_db_vectors.json:

    {"case": ..., "kind": ..., "input": "{DIR}/...", "mapping": {...}, "size": N,
     "events": [{"batch": {"rows", "columns", "indicators", "ind"}} | {"reject": [row, field, reason]}
                | {"error": {"type": "source"|"mapping"|"other", "message": ...}}]}

"{DIR}" stands for the absolute (resolved) path of native/testdata. A string that is not
UTF-8 (a lone surrogate) is written as {"hex": its surrogatepass bytes}. "indicators" is
connectors.content.indicators_json of the row's Indicators; "ind" the same as
[code, value type, value (a float as its repr), date].

Run: cd /work/main && .venv/bin/python native/testdata/gen_readers_db.py
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.content import indicators_json  # noqa: E402
from connectors.mapping import MappingError, mapping_from_dict  # noqa: E402
from connectors.sources import SourceError, effective_mapping, read_batches  # noqa: E402
from connectors.synth import write_synthetic_sources  # noqa: E402

HERE = Path(__file__).resolve().parent
DB = HERE / "readers_db"
OUT = HERE / "readers_db_vectors.json"
DIR = str(HERE)


def enc(s):
    if s is None:
        return None
    try:
        s.encode("utf-8")
        return s.replace(DIR, "{DIR}")
    except UnicodeEncodeError:
        return {"hex": s.encode("utf-8", "surrogatepass").hex()}


def ind_struct(i):
    v = i.value
    if v is None:
        t, out = "none", None
    elif isinstance(v, bool):
        t, out = "bool", v
    elif isinstance(v, int):
        t, out = "int", str(v)
    elif isinstance(v, float):
        t, out = "float", repr(v)
    else:
        t, out = "str", enc(v)
    return [i.code, t, out, i.date.isoformat() if i.date else None]


def run(kind: str, path: Path | str, override: dict | None = None, size: int = 3) -> dict:
    events: list[dict] = []
    mapping_doc = None
    try:
        override_m = mapping_from_dict({"identity": override}, "override") if override else None
        mapping = effective_mapping(kind, override_m)
        mapping_doc = {name: {"columns": list(s.columns), "format": s.format, "validate": s.validate}
                       for name, s in mapping.identity.items()}

        def sink(r):
            events.append({"reject": [r.row_number, enc(r.field), enc(r.reason)]})

        for numbers, columns, indicators in read_batches(kind, str(path), mapping, size, sink):
            events.append({"batch": {
                "rows": list(numbers),
                "columns": {k: [enc(v) for v in vs] for k, vs in columns.items()},
                "indicators": [indicators_json(x) for x in indicators],
                "ind": [[ind_struct(i) for i in x] for x in indicators],
            }})
    except SourceError as exc:
        events.append({"error": {"type": "source", "message": enc(str(exc))}})
    except MappingError as exc:
        events.append({"error": {"type": "mapping", "message": enc(str(exc))}})
    except Exception as exc:  # what Python crashes with: Go must fail too (not a SourceError)
        events.append({"error": {"type": "other", "message": enc(f"{type(exc).__name__}: {exc}")}})
    return {"kind": kind, "input": str(path).replace(DIR, "{DIR}"), "mapping": mapping_doc,
            "size": size, "events": events}


# ------------------------------------------------------------------ NHS


def patient(rng: random.Random, i: int) -> dict:
    """A Patient with every element sometimes absent, blank, padded, repeated or mistyped."""
    odd = [None, "", "  ", 7, 1.5, True, [], {}, ["x"], " a b ", "\u00a0x\u2003", "\x1cy\x1f"]

    def text(word):
        r = rng.random()
        return rng.choice(odd) if r < 0.06 else f" {word} " if r < 0.2 else word

    def several(make, k):
        if rng.random() < 0.04:
            return rng.choice([None, "x", {}, [1], [None], ["y"], 3])
        return [make() for _ in range(rng.randint(0, k))]

    p = {"resourceType": "Patient", "id": text(f"p{i}")}
    p["identifier"] = several(lambda: rng.choice([None, {
        "system": rng.choice(["https://fhir.nhs.uk/Id/nhs-number"] * 3 + ["other", None, 3, " https://fhir.nhs.uk/Id/nhs-number"]),
        "value": text(str(rng.randint(1000000000, 9999999999)))}] + [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                                       "value": text("943 476 5919")}] * 4), 3)
    p["name"] = several(lambda: {"use": text(rng.choice(["official", "usual", "old"])),
                                 "given": several(lambda: text(rng.choice(["ann", "bo", "Zoë", "José", "李"])), 3),
                                 "family": text(rng.choice(["lee", "ng", "O'Brien", "Müller"]))}, 3)
    p["birthDate"] = text(rng.choice(["1990-01-02", "1990-13-40", "19900102", "1990"]))
    p["gender"] = text(rng.choice(["female", "male", "unknown"]))
    p["address"] = several(lambda: {"use": text(rng.choice(["home", "work"])),
                                    "line": several(lambda: text("1 high st"), 2),
                                    "city": text("ely"), "postalCode": text("CB1 1AA")}, 3)
    for key in list(p):
        if key != "resourceType" and rng.random() < 0.08:
            del p[key]
    return p


DATES = ["2024-05-01", "2024-05", "2024", "2024-05-01T10:00:00Z", "2024-02-30", "2024-13", "24-01-01",
         "2024-05-01T", "\u0662\u0660\u0662\u0664-05-01", " 2024-05-02 ", "2024-5-1", "", None, 20240501,
         "2024-05-01T10\n:00", "0000-01-01", "9999-12-31"]


def evidence(rng: random.Random, pids: list, n: int) -> dict:
    kind = rng.choice(["EpisodeOfCare", "Condition", "Observation"])
    target = rng.choice(pids)
    ref = rng.choice([f"urn:uuid:{target}", f"Patient/{target}", target, f" urn:uuid:{target}", None, ""])
    refobj = rng.choice([{"reference": ref}] * 12 + [None, {}, {"reference": None}, {"display": "x"}])
    r = {"resourceType": kind, "id": f"e{n}"}
    if kind == "EpisodeOfCare":
        r["patient"] = refobj
        r["status"] = rng.choice(["active", "finished", "waitlist", "onhold", "planned", "cancelled",
                                  "entered-in-error", None, " active ", 5] + ["active", "finished"] * 3)
        r["type"] = rng.choice([
            [{"coding": [{"code": rng.choice(["talking-therapies", "drug-alcohol", "secondary-mental-health",
                                              "other", " drug-alcohol "])}]}],
            [{"coding": [{"code": "other"}, {"code": "drug-alcohol"}]}],
            [{"coding": [{"code": "talking-therapies"}]}, {"coding": "bad"}],
            [{"coding": [{"code": 5}]}], "talking-therapies", None, [],
            [None, {"coding": [None, {"code": "drug-alcohol"}]}],
        ])
        period = rng.choice([{"start": rng.choice(DATES), "end": rng.choice(DATES)},
                             {"start": "2024-01-01"}, {"start": "2023-01-01", "end": "2024-03-03"},
                             None, "2024", {}])
        if period is not None or rng.random() < 0.5:
            r["period"] = period
    elif kind == "Condition":
        r["subject"] = refobj
        r["clinicalStatus"] = rng.choice([{"coding": [{"code": "active"}]}, {"coding": [{"code": "resolved"}]},
                                          {"coding": [{"code": "resolved"}, {"code": "relapse"}]}, None, {},
                                          {"coding": []}, "active", {"coding": [{"code": ""}]}] + [None] * 3)
        r["code"] = rng.choice([{"coding": [{"code": c}]} for c in
                                ["44054006", "13645005", "195967001", "84757009", "1234", " 53741008 "]]
                               + [{"coding": [{"code": "1"}, {"code": "69896004"}]}, None, "diabetes", []])
        r["recordedDate"] = rng.choice(DATES + ["2023-04-05"] * 4)
        if rng.random() < 0.5:
            r["onsetDateTime"] = rng.choice(DATES)
    else:
        r["subject"] = "not even checked"
    return r


def write_bundles(dirpath: Path, bundles: list[dict | str | bytes]) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    for k, b in enumerate(bundles, start=1):
        data = b if isinstance(b, bytes) else (b if isinstance(b, str) else json.dumps(b)).encode("utf-8", "surrogatepass")
        (dirpath / f"bundle-{k:05d}.json").write_bytes(data)
    return dirpath


def fuzz_bundle(rng: random.Random, start: int, n: int, timestamp="2025-11-01T00:00:00Z") -> dict:
    pats = [patient(rng, start + i) for i in range(n)]
    pids = [p.get("id") if isinstance(p.get("id"), str) else "x" for p in pats]
    pids = [p.strip() for p in pids] + ["", "nobody"]
    entries = [{"resource": p} for p in pats]
    for k in range(n):
        entries.append({"fullUrl": "x", "resource": evidence(rng, pids, k)})
    rng.shuffle(entries)
    return {"resourceType": "Bundle", "type": "collection", "timestamp": timestamp, "entry": entries}


def nhs_cases(clean: Path) -> list[tuple[str, dict]]:
    base = DB / "nhs"
    cases: list[tuple[str, dict]] = []

    def add(name, path, override=None, size=3):
        cases.append((name, run("nhs", path, override, size)))

    clean_dir = base / "clean"
    shutil.copytree(clean, clean_dir)
    add("nhs-clean-size3", clean_dir)
    add("nhs-clean-size1000", clean_dir, size=1000)
    add("nhs-clean-one-file", clean_dir / "bundle-00001.json", size=7)
    add("nhs-clean-trailing-slash", str(clean_dir) + "//./", size=50)
    add("nhs-override-joined", clean_dir, {"local_id": ["id", "nhs_number"], "given_name": ["family", "given"],
                                           "address": ["address_line", "city", "postalCode"]}, size=10)
    add("nhs-override-unknown-column", clean_dir, {"given_name": ["given", "nickname", "aaa"]})

    rng = random.Random(7)
    fuzz = write_bundles(base / "fuzz", [fuzz_bundle(rng, 0, 120), fuzz_bundle(rng, 1000, 90, None),
                                         fuzz_bundle(rng, 2000, 60, "2024-02")])
    (fuzz / "notes.txt").write_text("not a bundle")
    (fuzz / ".json").write_text("hidden: not read")
    (fuzz / "upper.JSON").write_text("not read")
    (fuzz / "dir.json").mkdir()
    (fuzz / "dir.json" / ".gitkeep").touch()  # git keeps no empty directory; not a *.json bundle
    add("nhs-fuzz-size5", fuzz, size=5)
    add("nhs-fuzz-size64", fuzz, size=64)
    add("nhs-fuzz-joined", fuzz, {"local_id": ["id", "gender"], "postcode": ["postalCode", "city"]}, size=16)

    def doc():
        d = json.loads((clean / "bundle-00001.json").read_text())
        d["entry"] = d["entry"][:36]  # small testdata: the first few patients and their evidence
        return d

    def pats(d):
        return [e["resource"] for e in d["entry"] if e["resource"]["resourceType"] == "Patient"]

    def edit(name, fn, size=3, override=None):
        d = doc()
        fn(d)
        add(name, write_bundles(base / name, [d]), override, size)

    edit("nhs-given-as-string", lambda d: pats(d)[1]["name"][0].__setitem__("given", "Ann"))
    edit("nhs-duplicate-ids", lambda d: pats(d)[6].__setitem__("id", pats(d)[2]["id"]))
    edit("nhs-duplicate-ids-padded", lambda d: pats(d)[6].__setitem__("id", " " + pats(d)[2]["id"] + "\t"))
    edit("nhs-timestamp-number", lambda d: d.__setitem__("timestamp", 5))
    edit("nhs-timestamp-bad", lambda d: d.__setitem__("timestamp", "2025-02-29"))
    edit("nhs-entry-not-object", lambda d: d["entry"].insert(3, "Patient/123"))
    edit("nhs-entry-null", lambda d: d["entry"].insert(2, None))
    edit("nhs-resource-missing", lambda d: d["entry"].insert(4, {"fullUrl": "x"}))
    edit("nhs-resource-list", lambda d: d["entry"].insert(4, {"resource": []}))
    edit("nhs-resourcetype-number", lambda d: d["entry"].insert(4, {"resource": {"resourceType": 3}}))
    edit("nhs-reference-not-object", lambda d: d["entry"].append(
        {"resource": {"resourceType": "Condition", "subject": "Patient/abc"}}))
    edit("nhs-reference-value-number", lambda d: d["entry"].append(
        {"resource": {"resourceType": "EpisodeOfCare", "patient": {"reference": 12}}}))
    edit("nhs-entry-missing", lambda d: d.pop("entry"))
    edit("nhs-entry-empty", lambda d: d.__setitem__("entry", []))
    edit("nhs-entry-null-list", lambda d: d.__setitem__("entry", None))
    edit("nhs-root-type-number", lambda d: d.__setitem__("resourceType", 5), size=3)
    edit("nhs-root-type-number-headed", lambda d: (d.__setitem__("resourceType", 5),
                                                   d.__setitem__("meta", {"resourceType": "Bundle"})))
    edit("nhs-root-type-missing", lambda d: (d.pop("resourceType"), d.__setitem__("meta", {"resourceType": "Bundle"})))
    edit("nhs-root-type-dict", lambda d: (d.__setitem__("resourceType", {"k": 2, "k2": "it's"}),
                                          d.__setitem__("meta", {"resourceType": "Bundle"})))
    edit("nhs-root-type-list", lambda d: d.__setitem__("resourceType", ["Bundle", {"a": None, "b": True}, 1.5e300, -0.0]))
    # \d is Python 3.11's (Unicode 14) decimal digits: the Arabic-Indic ones are (see DATES),
    # the Kawi ones Unicode 15 added are not, so this timestamp is malformed.
    edit("nhs-timestamp-kawi-digits", lambda d: d.__setitem__("timestamp", "\U00011f52\U00011f50\U00011f52\U00011f54-05-01"))
    edit("nhs-timestamp-arabic-digits", lambda d: d.__setitem__("timestamp", "\u0662\u0660\u0662\u0664-05-01"))
    edit("nhs-keys-escaped", lambda d: [p.__setitem__("i\u0064", " esc-" + str(k)) for k, p in enumerate(pats(d))])

    def raw(name, text: str | bytes, size=3, extra: list | None = None):
        files = [text] + (extra or [])
        add(name, write_bundles(base / name, files), size=size)

    head = '{"resourceType": "Bundle", "entry": ['
    p1 = '{"resource": {"resourceType": "Patient", "id": "a1", "name": [{"given": ["Al"]}]}}'
    raw("nhs-json-truncated", '{"resourceType": "Bundle", "entry": [{"resource": {')
    raw("nhs-json-trailing-comma-array", head + p1 + ",]}")
    raw("nhs-json-trailing-comma-object", '{"resourceType": "Bundle", "entry": [],}')
    raw("nhs-json-missing-colon", '{"resourceType": "Bundle", "entry" []}')
    raw("nhs-json-single-quotes", "{\"resourceType\": \"Bundle\",\n 'entry': []}")
    raw("nhs-json-extra-data", '{"resourceType": "Bundle", "entry": []} {}')
    raw("nhs-json-extra-data-ws", '{"resourceType": "Bundle", "entry": []}  \n\t ')
    raw("nhs-json-control-char", head + '{"resource": {"resourceType": "Patient", "id": "a\tb"}}]}')
    raw("nhs-json-bad-escape", head + '{"resource": {"resourceType": "Patient", "id": "a\\xb"}}]}')
    raw("nhs-json-bad-u-escape", head + '{"resource": {"resourceType": "Patient", "id": "a\\u12G4"}}]}')
    raw("nhs-json-u-escape-at-end", head + '{"resource": {"resourceType": "Patient", "id": "\\u1234')
    raw("nhs-json-bad-second-surrogate", head + '{"resource": {"resourceType": "Patient", "id": "\\ud83d\\uZZ00"}}]}')
    raw("nhs-json-unterminated-string", head + '{"resource": {"resourceType": "Patient", "id": "ab')
    raw("nhs-json-unterminated-escape", head + '{"resource": {"resourceType": "Patient", "id": "ab\\')
    raw("nhs-json-lone-minus", head + '-]}')
    raw("nhs-json-leading-zero", head + '01]}')
    raw("nhs-json-dot-end", '{"resourceType": "Bundle", "n": 1.')
    raw("nhs-json-exp-backtrack", '{"resourceType": "Bundle", "n": 1e}')
    raw("nhs-json-bad-literal", '{"resourceType": "Bundle", "n": nul}')
    raw("nhs-json-multiline-error", '{"resourceType": "Bundle",\n  "entry": [\n    {"résource": x}\n  ]\n}')
    raw("nhs-json-nan-values", head + '{"resource": {"resourceType": "Patient", "id": NaN, "gender": -Infinity}},'
        + '{"resource": {"resourceType": "Patient", "id": "ok", "birthDate": Infinity}}]}')
    raw("nhs-json-numbers", head + '{"resource": {"resourceType": "Patient", "id": "n1", "gender": -0.0e-5}},'
        + '{"resource": {"resourceType": "Patient", "id": "n2", "name": [{"family": 12E+3}]}}]}')
    raw("nhs-json-surrogates", head + '{"resource": {"resourceType": "Patient", "id": "s\\ud800", "name": [{"given": '
        + '["\\ud83d\\ude00 x", "\\udc00\\ud800", "\\ud83dz"]}]}}]}')
    raw("nhs-json-escapes", head + '{"resource": {"resourceType": "Patient", "id": "e\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9", '
        + '"gender": "\\u0020 male \\u3000"}}]}')
    raw("nhs-json-duplicate-keys", head + '{"resource": {"resourceType": "Patient", "id": "d1", "id": "d2", '
        + '"name": [{"given": ["A"], "given": null}], "gender": 5, "gender": "f"}}]}')
    raw("nhs-json-deep-ok", '{"resourceType": "Bundle", "x": ' + "[" * 400 + "]" * 400 + ', "entry": []}')
    raw("nhs-json-deep-5k", '{"resourceType": "Bundle", "type": "collection", "entry": [' + "[" * 5_000
        + "]" * 5_000 + "]}")
    raw("nhs-json-deep-then-syntax", '{"resourceType": "Bundle", "entry": [' + "{" * 3000)
    raw("nhs-json-syntax-then-deep", '{"resourceType": "Bundle", "entry": [} ' + "[" * 3000)
    raw("nhs-patient-not-bundle", '{"resourceType": "Patient", "id": "p1", "x": "Bundle", "y": {"resourceType": "Bundle"}}')
    raw("nhs-json-list-root", '[{"resourceType": "Bundle"}]')
    raw("nhs-json-int-root", '12 \n{"resourceType": "Bundle"}')
    raw("nhs-json-float-root", '{"resourceType": "Bundle"}'[0:0] + '1.5e3 ' + '"resourceType": "Bundle"')
    raw("nhs-json-repr-types", '{"resourceType": ["x\\u00e9\\n\\u0000\\ud800\\"\'", 1e400, -0, 10, true, null, {}],'
        ' "m": {"resourceType": "Bundle"}}')
    # A character Unicode 15 added is unassigned to Python 3.11: repr() escapes it.
    raw("nhs-json-repr-unicode15", '{"resourceType": "Bund\\ud807\\udf04le \\u0cf3 \\u00e9", "meta": {"resourceType": "Bundle"}}')
    raw("nhs-json-string-root", '"\\"resourceType\\": \\"Bundle\\""')
    raw("nhs-json-null-root", 'null  \n', extra=['{"resourceType": "Bundle"}'])
    raw("nhs-no-head", '{"entry": []}')
    raw("nhs-head-after-64k", '{"x": "' + "a" * 70000 + '", "resourceType": "Bundle"}')
    raw("nhs-head-with-vt", '{"resourceType"\x0b:\x0c"Bundle", "entry": []}'.replace("\x0b", " ").replace("\x0c", " "))
    raw("nhs-utf8-bom", "\ufeff" + head + p1 + "]}")
    raw("nhs-utf8-invalid-start", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xffl"'))
    raw("nhs-utf8-invalid-continuation", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xc3(l"'))
    raw("nhs-utf8-3byte-cont2", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xe2\x82(l"'))
    raw("nhs-utf8-4byte-cont3", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xf0\x9f\x98(l"'))
    raw("nhs-utf8-overlong", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xe0\x80\x80l"'))
    raw("nhs-utf8-truncated-end", (head + p1 + "]}").encode() + b"\xe2\x82")
    raw("nhs-utf8-truncated-4", (head + p1 + "]}").encode() + b"\xf0\x9f\x98")
    raw("nhs-utf8-surrogate-bytes", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xed\xa0\x80l"'))
    raw("nhs-utf8-surrogate-bad", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xed\xa0(l"'))
    raw("nhs-utf8-bom-bad-after", b"\xef\xbb\xbf" + (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xc0l"'))
    raw("nhs-utf8-f5", (head + p1 + "]}").encode().replace(b'"Al"', b'"A\xf5l"'))
    raw("nhs-later-file-broken", doc(), size=4, extra=[doc(), '{"resourceType": "Bundle", "entry": [}'])

    (base / "empty").mkdir()
    (base / "empty" / ".gitkeep").touch()  # git keeps no empty directory; still no *.json bundle
    add("nhs-empty-dir", base / "empty")
    add("nhs-missing-path", base / "no-such-dir")
    (base / "only-txt").mkdir()
    (base / "only-txt" / "a.txt").write_text("{}")
    add("nhs-dir-without-json", base / "only-txt")
    d = base / "head-bad-second"
    write_bundles(d, [doc(), '{"no": "head"}'])
    add("nhs-head-checked-up-front", d)
    return cases


# ------------------------------------------------------------------ council


def council_cases(clean: Path) -> list[tuple[str, dict]]:
    base = DB / "council"
    base.mkdir(parents=True)
    cases: list[tuple[str, dict]] = []

    def add(name, path, override=None, size=3):
        cases.append((name, run("council", path, override, size)))

    clean_db = base / "clean.sqlite"
    shutil.copy(clean, clean_db)
    db = sqlite3.connect(clean_db, isolation_level=None)
    db.execute("PRAGMA page_size = 1024")
    db.execute("VACUUM")
    db.close()
    add("council-clean-size3", clean_db)
    add("council-clean-size1000", clean_db, size=1000)
    add("council-override", clean_db, {"local_id": ["person_ref", "sex"], "address": ["town", "postcode", "surname"],
                                       "locality": "address_line_2"}, size=8)
    add("council-override-missing", clean_db, {"given_name": ["forename", "nickname"]})
    add("council-override-not-in-schema", clean_db, {"given_name": "middle_names", "nino": "ni_number"}, size=5)
    add("council-dsn", "sqlite:///" + str(clean_db), size=100)

    def nth(n):
        return f"(SELECT person_ref FROM residents ORDER BY person_ref LIMIT 1 OFFSET {n - 1})"

    def edit(name, *sql, size=3, override=None, src=clean_db):
        path = base / f"{name}.sqlite"
        shutil.copy(src, path)
        db = sqlite3.connect(path, isolation_level=None)
        for s in sql:
            db.execute(s)
        db.execute("PRAGMA page_size = 1024")
        db.execute("VACUUM")
        db.close()
        add(name, path, override, size)
        return path

    unkeyed = ("CREATE TABLE r2 AS SELECT * FROM residents", "DROP TABLE residents", "ALTER TABLE r2 RENAME TO residents")
    loose = tuple(q for t in ("ctax_accounts", "care_leavers", "adult_social_care", "supporting_families")
                  for q in (f"CREATE TABLE {t}2 AS SELECT * FROM {t}", f"DROP TABLE {t}", f"ALTER TABLE {t}2 RENAME TO {t}"))
    messy = edit(
        "council-messy",
        *unkeyed,
        *loose,
        f"UPDATE residents SET forename = x'4a6f686e' WHERE person_ref = {nth(2)}",
        f"UPDATE residents SET surname = CAST(x'4dfc6c6c6572' AS TEXT) WHERE person_ref = {nth(3)}",
        f"UPDATE residents SET nhs_number = 9434765919 WHERE person_ref = {nth(4)}",
        f"UPDATE residents SET postcode = 1.5 WHERE person_ref = {nth(5)}",
        f"UPDATE residents SET date_of_birth = 19800101 WHERE person_ref = {nth(6)}",
        f"UPDATE residents SET forename = '  Zoë\u00a0', surname = '\x1cO''Brien\u3000', sex = '', "
        f"address_line_1 = '   ', address_line_2 = ' Flat 2 ' WHERE person_ref = {nth(7)}",
        f"UPDATE residents SET town = NULL, postcode = NULL, forename = NULL WHERE person_ref = {nth(8)}",
        "INSERT INTO residents (person_ref, forename, surname) SELECT person_ref, 'Dup', 'Licate' FROM residents "
        f"WHERE person_ref = {nth(9)}",
        "INSERT INTO residents (person_ref, forename) VALUES (NULL, 'No ref')",
        "INSERT INTO residents (person_ref, forename) VALUES ('', 'Empty ref')",
        "INSERT INTO residents (person_ref, forename) VALUES (' ', 'Blank ref')",
        "INSERT INTO residents (person_ref, forename) VALUES (12345, 'Int ref')",
        "INSERT INTO residents (person_ref, forename) VALUES (x'00ff', 'Blob ref')",
        f"UPDATE residents SET middle_names = CAST(x'e4b8ad' AS TEXT) WHERE person_ref = {nth(10)}",
        # service rows: sums, statuses, carers, open cases, mistyped values
        f"INSERT INTO ctax_accounts VALUES ('A1', {nth(11)}, 0.1, 0.2, '2024-01-02')",
        f"INSERT INTO ctax_accounts VALUES ('A2', {nth(11)}, 0.2, NULL, '2024-03-04')",
        f"INSERT INTO ctax_accounts VALUES ('A3', {nth(12)}, 100, -5, '2023-12-31')",
        f"INSERT INTO ctax_accounts VALUES ('A4', {nth(13)}, 1e17, 2.675, '2023-12-31')",
        f"INSERT INTO ctax_accounts VALUES ('A5', {nth(14)}, 'lots', NULL, '2023-12-31')",
        f"INSERT INTO ctax_accounts VALUES ('A6', {nth(15)}, 5, 'x', '2023-12-31')",
        f"INSERT INTO ctax_accounts VALUES ('A7', {nth(16)}, 5, NULL, '2023-02-30')",
        f"INSERT INTO care_leavers VALUES ({nth(17)}, '2020-01-01', '2024-02-29')",
        f"INSERT INTO care_leavers VALUES ({nth(18)}, 'soon', '2024-02-29')",
        f"INSERT INTO care_leavers VALUES ({nth(19)}, NULL, 20240101)",
        f"INSERT INTO adult_social_care VALUES ('S1', {nth(20)}, 'eligible', 1, '2024-01-01')",
        f"INSERT INTO adult_social_care VALUES ('S2', {nth(20)}, 'assessed', 0, '2024-06-01')",
        f"INSERT INTO adult_social_care VALUES ('S3', {nth(21)}, 'assessed', 0, '2024-06-01')",
        f"INSERT INTO adult_social_care VALUES ('S4', {nth(22)}, NULL, 1, '2022-06-01')",
        f"INSERT INTO adult_social_care VALUES ('S5', {nth(23)}, 'eligible', 2, '2022-06-01')",
        f"INSERT INTO adult_social_care VALUES ('S6', {nth(24)}, 'eligible', 'yes', '2022-06-01')",
        f"INSERT INTO adult_social_care VALUES ('S7', {nth(25)}, 'eligible', 1, NULL)",
        f"INSERT INTO supporting_families VALUES ('F1', {nth(26)}, 'open', '2021-01-01')",
        f"INSERT INTO supporting_families VALUES ('F2', {nth(26)}, 'open', '2022-01-01')",
        f"INSERT INTO supporting_families VALUES ('F3', {nth(27)}, 'closed', '2022-01-01')",
        f"INSERT INTO supporting_families VALUES ('F4', {nth(28)}, 'open', '2022-1-1')",
        "INSERT INTO supporting_families VALUES ('F5', 12345, 'open', '2019-05-05')",
        "INSERT INTO supporting_families VALUES ('F6', 'b''\\x00\\xff''', 'open', 'bad')",
        "INSERT INTO ctax_accounts VALUES ('A8', 12345, 'bad', NULL, '2023-12-31')",
        size=4,
    )
    add("council-messy-size1", messy, size=1)
    add("council-messy-override", messy, {"local_id": ["person_ref", "forename"], "nhs_number": "postcode",
                                          "date_of_birth": "updated_on"}, size=6)
    edit("council-year-zero", f"INSERT INTO care_leavers VALUES ({nth(10)}, NULL, '0000-01-01')", size=4)
    edit("council-updated-on-bad", f"UPDATE residents SET updated_on = '2024-02-30' WHERE person_ref = {nth(5)}",
         override={"date_of_birth": "updated_on"}, size=2)
    edit("council-updated-on-int", f"UPDATE residents SET updated_on = 20240101 WHERE person_ref = {nth(5)}",
         override={"date_of_birth": "updated_on"}, size=2)
    edit("council-missing-table", "DROP TABLE care_leavers")
    edit("council-missing-tables", "DROP TABLE care_leavers", "DROP TABLE ctax_accounts")
    edit("council-table-renamed-case", "ALTER TABLE residents RENAME TO tmp_r", "ALTER TABLE tmp_r RENAME TO Residents")
    edit("council-view-not-table", "ALTER TABLE supporting_families RENAME TO sf2",
         "CREATE VIEW supporting_families AS SELECT * FROM sf2")
    edit("council-service-lacks-column", "ALTER TABLE ctax_accounts DROP COLUMN hb_overpayment_gbp")
    edit("council-residents-lacks-mapped", "ALTER TABLE residents DROP COLUMN surname")
    edit("council-residents-lacks-two", "ALTER TABLE residents DROP COLUMN surname", "ALTER TABLE residents DROP COLUMN town")
    edit("council-residents-lacks-key", *unkeyed, "ALTER TABLE residents RENAME COLUMN person_ref TO Person_Ref")
    edit("council-no-residents", "DELETE FROM residents")
    edit("council-extra-column", "ALTER TABLE residents ADD COLUMN nickname TEXT",
         "UPDATE residents SET nickname = 'Nick'", override={"given_name": ["nickname"]})
    edit("council-date-declared", *unkeyed, "CREATE TABLE r3 (person_ref TEXT, forename TEXT, middle_names TEXT, "
         "surname TEXT, date_of_birth DATE, sex TEXT, nhs_number TEXT, ni_number TEXT, address_line_1 TEXT, "
         "address_line_2 TEXT, town TEXT, postcode TEXT, updated_on DATE)",
         "INSERT INTO r3 SELECT * FROM residents", "DROP TABLE residents", "ALTER TABLE r3 RENAME TO residents",
         size=10)
    notdb = base / "not-a-database.sqlite"
    notdb.write_bytes(b"SQLite format 2\0garbage")
    add("council-not-a-database", notdb)
    add("council-missing-file", base / "no-such.sqlite")
    add("council-directory", base)
    return cases


def measure_depth() -> int:
    """The deepest nesting json.loads takes inside the reader (RecursionError past it)."""
    tmp = Path(tempfile.mkdtemp())
    try:
        def ok(depth):
            d = tmp / f"d{depth}"
            write_bundles(d, ['{"resourceType": "Bundle", "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"])
            r = run("nhs", d)
            return not any("nested too deeply" in str(e.get("error", {}).get("message")) for e in r["events"])

        lo, hi = 1, 5000
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    if DB.exists():
        shutil.rmtree(DB)
    DB.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        write_synthetic_sources(src, 90, seed=11)
        cases = nhs_cases(src / "nhs") + council_cases(src / "council.sqlite")
    depth = measure_depth()
    out = {"dir": "{DIR}", "nhs_max_depth": depth, "cases": [dict(case=name, **c) for name, c in cases]}
    OUT.write_text(json.dumps(out, indent=None, ensure_ascii=True, separators=(",", ":")) + "\n")
    size = sum(f.stat().st_size for f in DB.rglob("*") if f.is_file()) + OUT.stat().st_size
    print(f"{len(cases)} cases, max JSON depth {depth}, {size / 1e6:.2f} MB of testdata")


if __name__ == "__main__":
    main()
