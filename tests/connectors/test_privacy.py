"""Privacy: no raw identifier leaves the connector, tokens are keyed, projects are unlinkable."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from connectors.content import decrypt_rows
from connectors.extract import pseudonymise_extract
from connectors.mapping import load_mapping
from connectors.pseudonymise import CLK_COLUMNS, MATCH_KEYS, TOKEN_COLUMNS
from joinedup.cli import cli
from joinedup.home import init_home
from tests.connectors.extract_fixtures import (
    keyring,
    person_rows,
    read_table,
    tokens_by_local_id,
    write_csv,
    write_mapping,
)

TOKEN_LIKE = [c for c, _ in TOKEN_COLUMNS] + list(MATCH_KEYS)


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def needles_of(row: dict[str, str]) -> set[str]:
    """Every raw identifier value of a row in the forms it could leak (lower case)."""
    out: set[str] = set()
    for col in ("first", "middle", "surname", "town", "street"):
        if row[col]:
            out |= {row[col].lower(), fold(row[col]), fold(row[col]).replace("'", "").replace("-", " ")}
    out.add(f"{row['house']} {row['street']}".lower())
    if row["dob"]:
        try:
            d = datetime.strptime(row["dob"], "%d/%m/%Y").date()
            out |= {d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%Y%m%d"), d.strftime("%d-%m-%Y"),
                    d.strftime("%d%m%Y")}
        except ValueError:
            out.add(row["dob"])
    for col in ("nhs", "ni", "pc"):
        if row[col]:
            v = row[col].lower()
            out |= {v, v.replace(" ", "")}
    if row["nhs"]:
        n = row["nhs"]
        out.add(f"{n[:3]} {n[3:6]} {n[6:]}")
    if row["ni"]:
        out.add(row["ni"][:8].lower())
    return {n for n in out if n}


def string_leaves(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [k, *string_leaves(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in string_leaves(v)]
    return [str(obj).lower()] if obj is not None else []


def assert_no_leak(haystack_bytes: bytes, needles: set[str], min_len: int, where: str) -> None:
    hay = haystack_bytes.lower()
    for n in needles:
        if len(n) >= min_len:
            assert n.encode() not in hay, f"{n!r} found in {where}"


@pytest.fixture
def extract(tmp_path: Path):
    rows = person_rows(60, seed=11)
    rows[0]["first"], rows[0]["surname"] = "Anne-Marie", "O'Brien"
    rows[1]["nhs"] = rows[1]["nhs"][:-1] + str((int(rows[1]["nhs"][-1]) + 1) % 10)  # dropped value
    csv_path = write_csv(tmp_path / "people.csv", rows)
    mapping = load_mapping(write_mapping(tmp_path / "map.toml"))
    out = tmp_path / "out"
    manifest = pseudonymise_extract(keyring(), "csv", "privacy-src", str(csv_path), mapping, out)
    return rows, out, manifest, csv_path, mapping


def test_no_raw_identifier_in_any_byte_of_linkage_content_or_manifest(extract):
    rows, out, manifest, _, _ = extract
    needles = set().union(*(needles_of(r) for r in rows))
    assert len(needles) > 500
    # The files as stored (parquet metadata and pages, the manifest text).
    for name in ("linkage.parquet", "content.parquet", "manifest.json"):
        assert_no_leak((out / name).read_bytes(), needles, 6, name)
    # Decoded values: compression cannot hide anything here.
    linkage = pq.read_table(out / "linkage.parquet")
    numeric = {int(n) for n in needles if n.isdigit()}
    for col in linkage.column_names:
        values = linkage.column(col).to_pylist()
        if col in CLK_COLUMNS:
            assert_no_leak(b"|".join(v for v in values if v), needles, 6, col)
        elif col == "ref":
            assert all(len(v) == 24 and int(v, 16) >= 0 for v in values)
        else:
            assert not numeric & set(values), col
    docs = decrypt_rows(keyring().content_key(), manifest["extract_id"], read_table(out / "content.parquet"))
    assert len(docs) == linkage.num_rows
    for leaf in string_leaves(docs) + string_leaves(json.loads((out / "manifest.json").read_text())):
        for n in needles:
            if len(n) >= 3:
                assert n not in leaf, f"{n!r} in {leaf!r}"


def test_tokens_are_keyed_not_plain_hashes(extract):
    rows, out, _, _, _ = extract
    values = set()
    for r in rows:
        d = datetime.strptime(r["dob"], "%d/%m/%Y").date()
        values |= {r["first"].lower(), r["surname"].lower(), d.isoformat(), r["nhs"], r["ni"][:8], r["pc"]}
    plain = set()
    for v in values:
        for algo in ("sha256", "md5", "sha1"):
            digest = hashlib.new(algo, v.encode()).digest()
            plain.add(int.from_bytes(digest[:8], "big", signed=True))
    linkage = pq.read_table(out / "linkage.parquet")
    for col in TOKEN_LIKE:
        assert not plain & set(linkage.column(col).to_pylist()), col


def test_keymap_and_rejects_stay_minimal(extract):
    rows, out, _, _, _ = extract
    assert pq.read_table(out / "keymap.parquet").column_names == ["local_id", "ref"]
    needles = set().union(*(needles_of(r) for r in rows))
    assert_no_leak((out / "rejects.csv").read_bytes(), needles, 3, "rejects.csv")
    assert b"nhs_number,invalid check digit,field_dropped" in (out / "rejects.csv").read_bytes()


def test_same_key_and_project_give_identical_tokens(extract, tmp_path):
    _, out, _, csv_path, mapping = extract
    again = tmp_path / "again"
    pseudonymise_extract(keyring(), "csv", "privacy-src", str(csv_path), mapping, again)
    a, b = tokens_by_local_id(out), tokens_by_local_id(again)
    assert a.keys() == b.keys() and len(a) == 60
    for local_id, row in a.items():
        assert row["ref"] == b[local_id]["ref"]  # refs are keyed per project and source record
        for col in TOKEN_LIKE + list(CLK_COLUMNS):
            assert row[col] == b[local_id][col], (local_id, col)


def test_another_project_shares_no_token_or_filter(extract, tmp_path):
    _, out, _, csv_path, mapping = extract
    other = tmp_path / "other"
    pseudonymise_extract(keyring("proj-other"), "csv", "privacy-src", str(csv_path), mapping, other)
    a, b = pq.read_table(out / "linkage.parquet"), pq.read_table(other / "linkage.parquet")
    for col in TOKEN_LIKE + list(CLK_COLUMNS):
        left = {v for v in a.column(col).to_pylist() if v is not None}
        right = {v for v in b.column(col).to_pylist() if v is not None}
        assert left and not left & right, col


def test_cli_output_holds_no_identifier(extract, tmp_path):
    rows, _, _, csv_path, _ = extract
    init_home(tmp_path / "home", project_id="p")
    result = CliRunner().invoke(cli, [
        "extract", "--home", str(tmp_path / "home"), "--kind", "csv", "--source-name", "s",
        "--input", str(csv_path), "--mapping", str(tmp_path / "map.toml"), "--out", str(tmp_path / "o"),
    ])
    assert result.exit_code == 0, result.output
    needles = set().union(*(needles_of(r) for r in rows))
    assert_no_leak(result.output.encode(), needles, 4, "CLI output")
