"""The extract's vectorised paths give exactly what the plain Python definitions give.

Each fast path replaced per-row Python with numpy over a batch; these tests compare it
with the plain definition on awkward input (non-ASCII letters, repeated bigrams, blank
and whitespace-only texts, values that are equal but print differently).
"""

from __future__ import annotations

import json
import random
import secrets
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from connectors.columnar import ColumnarEncoder, _Distinct
from connectors.content import indicators_json
from connectors.extract import _ref_order
from connectors.mapping import mapping_from_dict
from connectors.pseudonymise import IdentityEncoder, SaltedPermutation, _ClkField, _grams
from connectors.records import Indicator
from tests.connectors.extract_fixtures import keyring


def _word_grams_plain(text: str) -> list[str]:
    """Distinct bigrams over the text's words (each padded with "_"), in first-seen order."""
    out: dict[str, None] = {}
    for word in text.split():
        for gram in _grams(word):
            out.setdefault(gram, None)
    return list(out)


def _texts(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "abcxyz _ßøé中1-'\t"
    texts: list[str | None] = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(n)]
    return texts + ["12 high street", "a", "  ", "aa aa aa", "__ _", None, "", "\u00a0x\u2003y"]


def test_address_filters_equal_the_per_text_definition():
    texts = _texts(3000, seed=3)
    plain = _ClkField(b"k" * 32, 1024, 10, target=200)
    fast = _ClkField(b"k" * 32, 1024, 10, target=200)
    present = np.array([bool(t) for t in texts])
    expected = np.zeros((len(texts), 16), dtype=np.uint64)
    expected[present] = plain.filters_of([_word_grams_plain(t) for t in texts if t])
    filters, got_present = fast.encode_words(texts)
    assert (got_present == present).all()
    assert (filters.view(np.uint64).reshape(len(texts), 16) == expected).all()
    # and the bigram lists themselves, text by text
    kept = [t for t in texts if t]
    ids, counts = fast._text_gram_ids(kept)
    assert counts.tolist() == [len(_word_grams_plain(t)) for t in kept]
    inverse = {i: g for g, i in fast.bigram_ids.items()}
    starts = np.concatenate([[0], np.cumsum(counts)])
    for j in random.Random(4).sample(range(len(kept)), 200):
        assert [inverse[i] for i in ids[starts[j] : starts[j + 1]].tolist()] == _word_grams_plain(kept[j])


def test_salted_permutation_is_byte_stage_transpose_byte_stage_per_salt():
    """Independent reconstruction, bit by bit: byte stage 0 (output byte q is the salt's
    LUT applied to input byte inv[q]), then bit b of byte c of each 8-byte word becomes bit
    c of byte b, then byte stage 1; rows in several apply steps agree; one permutation
    per salt, so popcount and within-salt Dice are kept."""
    width = 128
    salting = SaltedPermutation(b"s" * 32, width)
    salting._APPLY_ROWS = 7  # many steps, one of them partial
    rng = np.random.default_rng(5)
    salts = rng.integers(0, 2**63, size=40, dtype=np.uint64)[rng.integers(0, 40, 100)]
    filters = rng.integers(0, 256, size=(100, width), dtype=np.uint8)
    rows = salting.rows(salts)
    out = salting.apply(filters, rows)

    def byte_stage(row: list[int], stage: int, salt_row: int) -> list[int]:
        inv, lut = salting.perm[stage][salt_row].astype(int), salting.lut[stage][salt_row].astype(int)
        assert sorted(inv.tolist()) == list(range(width))
        return [int(salting.luts[lut[q], row[inv[q]]]) for q in range(width)]

    def transpose(row: list[int]) -> list[int]:
        out_row = [0] * width
        for w in range(width // 8):
            for c in range(8):
                for b in range(8):
                    if row[8 * w + c] >> (7 - b) & 1:
                        out_row[8 * w + b] |= 1 << (7 - c)
        return out_row

    for i in range(100):
        expected = byte_stage(transpose(byte_stage(filters[i].tolist(), 0, rows[i])), 1, rows[i])
        assert out[i].tolist() == expected
    assert (np.unpackbits(out, axis=1).sum(axis=1) == np.unpackbits(filters, axis=1).sum(axis=1)).all()
    # rows of one salt move the same way: filter 0 under the salt of another row with it
    values, counts = np.unique(salts, return_counts=True)
    first, second = np.flatnonzero(salts == values[counts.argmax()])[:2]
    assert (salting.apply(filters[[first]], rows[[second]]) == out[[first]]).all()


def test_salted_permutation_leaves_no_byte_popcount_fingerprint():
    """One filter under many salts: with a byte stage alone the histogram of byte popcounts
    would be identical every time (attacks.views); three stages spread it."""
    from attacks.views import fingerprints

    salting = SaltedPermutation(b"k" * 32, 128)
    rng = np.random.default_rng(2)
    bits = np.zeros(1024, dtype=np.uint8)
    bits[rng.choice(1024, size=140, replace=False)] = 1
    filters = np.repeat(np.packbits(bits)[None, :], 200, axis=0)
    salts = rng.integers(0, 2**63, size=200, dtype=np.uint64)
    out = salting.apply(filters, salting.rows(salts))
    prints = fingerprints(out, np.ones(200, dtype=bool))
    assert len(set(prints)) > 150
    one_stage = salting._byte_stage(filters, salting.rows(salts), 0, (np.arange(200) * 128)[:, None])
    assert len(set(fingerprints(one_stage, np.ones(200, dtype=bool)))) == 1


def test_indicators_json_equals_one_dumps_of_the_list():
    values = [None, "a", 'q"uote', "é", 0, 1, True, False, 1.0, 0.0, -0.0, 2.5, 10**20, 123.45, -7.1, 1e-7,
              1e22, float("nan"), float("inf"), float("-inf")]
    rng = random.Random(6)
    for _ in range(300):
        inds = [Indicator(rng.choice(["x.a", "x.b"]), rng.choice(values),
                          rng.choice([None, date(2024, 1, rng.randint(1, 3))]))
                for _ in range(rng.randint(0, 4))]
        docs = [{"code": i.code, "date": i.date.isoformat() if i.date else None, "value": i.value} for i in inds]
        assert indicators_json(inds) == json.dumps(docs, separators=(",", ":"), sort_keys=True)


def test_ref_order_sorts_as_the_strings_do():
    refs = [secrets.token_hex(12) for _ in range(5000)] + ["0" * 24, "f" * 24, "0" * 23 + "1", "1" + "0" * 23]
    refs += refs[:5]  # ties
    chunked = pa.chunked_array([pa.array(refs[:2000]), pa.array(refs[2000:])])
    assert [refs[i] for i in _ref_order(chunked)] == sorted(refs)
    assert _ref_order(pa.array(refs).slice(3, 100)).tolist() == sorted(range(100), key=lambda i: (refs[3 + i], i))


def _dob_values(seed: int) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = [None, "", "  ", "1977-09-20", " 1977-09-20", "1977-9-20", "20/09/1977", "20-09-1977",
                             "1900-01-01", "1899-12-31", "2000-02-29", "1900-02-29", "2024-02-30", "0000-01-01",
                             "2099-01-01", "31/04/1980", "29/02/2004", "19770920", "1977-09-20T10:00",
                             "١٩٧٧-٠٩-٢٠", "1977/09/20", "20 Sep 1977", "20.09.1977", "2026-12-02", "2026-12-03"]
    for _ in range(3000):
        y, m, d = rng.randint(1890, 2030), rng.randint(0, 13), rng.randint(0, 32)
        out.append(rng.choice([f"{y:04d}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y:04d}", f"{d}/{m}/{y}",
                               f"{y}-{m}-{d}", f"{y:04d}{m:02d}{d:02d}"]))
    return out


@pytest.mark.parametrize("fmt", [None, "%Y-%m-%d", "%d/%m/%Y", "%Y%m%d"])
def test_dates_of_birth_parsed_by_column_equal_the_per_value_path(fmt):
    """Every distinct value's result (problem or tokens) is what `_dob` gives it."""
    spec = {"column": "dob"} if fmt is None else {"column": "dob", "format": fmt}
    mapping = mapping_from_dict({"identity": {"local_id": "id", "given_name": "g", "date_of_birth": spec}}, "test")
    values = _dob_values(seed=8)
    fast = ColumnarEncoder(IdentityEncoder(keyring()), mapping, today=date(2026, 12, 2))
    plain = ColumnarEncoder(IdentityEncoder(keyring()), mapping, today=date(2026, 12, 2))
    d = _Distinct(values)
    got = fast._dob_results(d)
    expected = list(zip(*[plain._dob(v) for v in d.values], strict=True))
    assert got[0] == expected[0]  # problems (Problem is a dataclass: compared by value)
    assert got[1:6] == expected[1:6]  # dob, year, month, day, daymonth tokens
    # the clean values did take the column path (there is none for other formats)
    assert (len(fast._dob_by_key) > 300) == (fmt != "%Y%m%d")


def test_the_pandas_probe_is_skipped_and_pandas_still_works_after():
    """In a fresh interpreter: pyarrow converts Python values without importing pandas,
    and a later `to_pandas` still imports it."""
    import subprocess
    import sys

    code = (
        "import sys; from connectors.extract import skip_pyarrow_pandas_probe; import pyarrow as pa;"
        "skip_pyarrow_pandas_probe(); pa.array(['a']); pa.table({'x': [1]});"
        "print('pandas' in sys.modules);"
        "print(type(pa.table({'x': [1]}).to_pandas()).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "DataFrame"]


def _patients(n: int, seed: int) -> list[dict]:
    """Patients with every element sometimes absent, blank, padded, repeated or of a wrong
    JSON type (which `flatten_patient` refuses)."""
    rng = random.Random(seed)
    odd = [None, "", "  ", 7, True, [], {}, ["x"], " a b "]

    def text(word: str) -> object:
        r = rng.random()
        return rng.choice(odd) if r < 0.08 else f" {word} " if r < 0.2 else word

    def several(make, k: int) -> object:
        if rng.random() < 0.05:
            return rng.choice([None, "x", {}, [1], [None], ["y"]])
        return [make() for _ in range(rng.randint(0, k))]

    out = []
    for i in range(n):
        p = {"resourceType": "Patient", "id": text(f"p{i}")}
        p["identifier"] = several(lambda: {"system": rng.choice(
            ["https://fhir.nhs.uk/Id/nhs-number", "other", None, 3]), "value": text(str(rng.randint(1, 99)))}, 3)
        p["name"] = several(lambda: {"use": text(rng.choice(["official", "usual", "old"])),
                                     "given": several(lambda: text(rng.choice(["ann", "bo", "cy"])), 3),
                                     "family": text(rng.choice(["lee", "ng"]))}, 3)
        p["birthDate"] = text("1990-01-02")
        p["gender"] = text("female")
        p["address"] = several(lambda: {"use": text(rng.choice(["home", "work"])),
                                        "line": several(lambda: text("1 high st"), 2),
                                        "city": text("ely"), "postalCode": text("CB1 1AA")}, 3)
        for key in list(p):
            if key != "resourceType" and rng.random() < 0.1:
                del p[key]
        out.append(p)
    return out


def test_nhs_flat_values_equal_flatten_patient():
    from connectors.sources.nhs import PATIENT_FIELDS, Malformed, flat_values, flatten_patient

    refused = 0
    for patient in _patients(4000, seed=11):
        try:
            flat = flatten_patient(patient)
        except Malformed as exc:
            refused += 1
            with pytest.raises(Malformed) as got:
                flat_values(patient)
            assert (got.value.field, got.value.reason) == (exc.field, exc.reason)
            continue
        assert flat_values(patient) == tuple(flat[f] for f in PATIENT_FIELDS)
    assert 200 < refused < 3800  # both kinds of patient were tried


def test_agency_csv_memo_gives_each_row_its_own_indicators_and_rejects(tmp_path):
    """Rows sharing their indicator values share one memo entry: every such row still gets
    the row path's content (its own ref) or its own reject line."""
    import csv

    import pyarrow.parquet as pq

    from connectors.content import decrypt_rows
    from connectors.extract import pseudonymise_extract
    from connectors.sources import read_records
    from connectors.sources.dwp import INDICATOR_COLUMNS
    from connectors.synth import write_synthetic_sources

    write_synthetic_sources(tmp_path / "src", 150, seed=5)
    with (tmp_path / "src" / "dwp_claimants.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for j in (3, 8, 13):  # three rows with the indicator values of row 1
        rows[j].update({c: rows[1][c] for c in INDICATOR_COLUMNS})
    for j in (20, 30):  # two rows with the same refused value
        rows[j].update({c: rows[2][c] for c in INDICATOR_COLUMNS})
        rows[j]["sanctions_12m"] = "several"
    path = tmp_path / "dwp.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    manifest = pseudonymise_extract(keyring(), "dwp", "dwp", str(path), None, tmp_path / "out")
    with (tmp_path / "out" / "rejects.csv").open() as fh:
        rejected = [r for r in csv.DictReader(fh) if r["action"] == "rejected"]
    assert [(r["row_number"], r["field"], r["reason"]) for r in rejected] == [
        ("21", "sanctions_12m", "not a number"), ("31", "sanctions_12m", "not a number")]
    keymap = {r["ref"]: r["local_id"] for r in pq.read_table(tmp_path / "out" / "keymap.parquet").to_pylist()}
    content = pq.read_table(tmp_path / "out" / "content.parquet")
    docs = decrypt_rows(keyring().content_key(), manifest["extract_id"], content)
    expected = {rec.identity["local_id"]: [
        {"code": i.code, "value": i.value, "date": i.date.isoformat() if i.date else None} for i in rec.indicators]
        for rec in read_records("dwp", str(path), rejects=lambda _r: None)}
    assert len(docs) == len(expected) == len(rows) - 2
    for doc in docs:
        assert doc["indicators"] == expected[keymap[doc["ref"]]]
    shared = {rows[j]["claimant_id"] for j in (1, 3, 8, 13)}
    assert len({json.dumps(expected[i]) for i in shared}) == 1 and expected[rows[1]["claimant_id"]]
