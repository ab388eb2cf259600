"""Filter bands (linkage.clk): a band is word i of a CLK folded to 64 bits, NULL when the
word is zero, derived in the link run's table from the filters the linkage unit holds."""

from __future__ import annotations

import os

import duckdb

from linkage.clk import add_band_columns, band_columns, band_sql, clk_struct_sql
from linkage.settings import filter_band_candidates


def _reference(blob: bytes, word: int) -> int | None:
    w = int.from_bytes(blob[16 * word:16 * word + 16], "big")
    if w == 0:
        return None
    x = (w & (2**64 - 1)) ^ (w >> 64)
    return x - 2**64 if x >= 2**63 else x


def test_band_equals_an_independent_fold_of_the_word():
    con = duckdb.connect()
    blobs = [os.urandom(128) for _ in range(50)] + [bytes(16) + os.urandom(112)]
    con.execute("CREATE TABLE raw (x BLOB)")
    con.executemany("INSERT INTO raw VALUES (?)", [(b,) for b in blobs])
    con.execute(f"CREATE TABLE t AS SELECT x, {clk_struct_sql('x', 8)} AS c FROM raw")
    for word in range(8):
        got = dict(con.execute(f"SELECT x, {band_sql('c', word)} FROM t").fetchall())
        assert all(got[b] == _reference(b, word) for b in blobs), word
    assert _reference(blobs[-1], 0) is None


def test_band_columns_are_added_for_the_rules_that_name_them():
    rules = filter_band_candidates()
    assert band_columns(["l.band_clk_given_pc_3 = r.band_clk_given_pc_3"]) == {
        "band_clk_given_pc_3": ("clk_given_pc", 3)}
    con = duckdb.connect()
    con.execute(f"CREATE TABLE records AS SELECT {clk_struct_sql('x', 8)} AS clk_given_pc "
                "FROM (SELECT ?::BLOB AS x)", [os.urandom(128)])
    added = add_band_columns(con, "records", rules, 8)
    # Only the CLK the table carries gets bands; the others are skipped.
    assert added == [f"band_clk_given_pc_{i}" for i in range(8)]
    assert add_band_columns(con, "records", rules, 8) == []
