"""CLKs (Bloom-filter encodings) held as 128-bit words, so a Dice coefficient is a few
integer popcounts in DuckDB.

A linkage file stores each CLK as a BLOB (docs/CONTRACTS.md). Casting BLOB -> BIT and
AND-ing two 1024-bit BIT values allocates a new bit string per pair; comparing eight
HUGEINT words with `&` and `bit_count` does not, and measures 4-5x faster in a cross join
(bench/RESULTS-linkage.md). So the stacked records table holds each CLK as
`STRUCT(n SMALLINT, w0 HUGEINT, ..., w<k-1> HUGEINT)`: its popcount (the Dice
denominator, computed once per record) and its bits, 128 at a time. The settings
document then writes a Dice level as `jup_dice(clk_given_l, clk_given_r) >= 0.8`, a
DuckDB macro created on every connection that scores pairs (`create_dice_macro`).
"""

from __future__ import annotations

import math
import re

import duckdb

DICE_FUNCTION = "jup_dice"
WORD_BYTES = 16  # one HUGEINT


def words_for_bits(clk_bits: int) -> int:
    """How many 128-bit words hold a CLK of `clk_bits` bits."""
    if clk_bits <= 0:
        raise ValueError(f"clk_bits must be positive, got {clk_bits}")
    return math.ceil(clk_bits / (8 * WORD_BYTES))


def clk_struct_sql(blob: str, words: int) -> str:
    """SQL turning a CLK BLOB expression into the words struct (NULL stays NULL).

    `array_slice(blob, a, b)::BIT::HUGEINT` reinterprets 16 bytes as a signed 128-bit
    integer; signedness does not matter to `&` and `bit_count`.
    """
    fields = ", ".join(
        f"w{i} := array_slice({blob}, {1 + WORD_BYTES * i}, {WORD_BYTES * (i + 1)})::BIT::HUGEINT"
        for i in range(words)
    )
    return (
        f"CASE WHEN {blob} IS NULL THEN NULL ELSE "
        f"struct_pack(n := bit_count({blob}::BIT)::SMALLINT, {fields}) END"
    )


def dice_macro_sql(words: int) -> str:
    """`jup_dice(a, b)`: Dice coefficient of two CLK word structs (NULL if either is)."""
    common = " + ".join(
        f"bit_count(struct_extract(a, 'w{i}') & struct_extract(b, 'w{i}'))::SMALLINT"
        for i in range(words)
    )
    return (
        f"CREATE OR REPLACE TEMP MACRO {DICE_FUNCTION}(a, b) AS "
        f"2.0 * ({common}) / nullif(struct_extract(a, 'n') + struct_extract(b, 'n'), 0)"
    )


def create_dice_macro(con: duckdb.DuckDBPyConnection, words: int) -> None:
    """Define `jup_dice` on this connection for CLKs of `words` 128-bit words."""
    con.execute(dice_macro_sql(words))


# Any case: Splink's Spark dialect writes the function name in capitals.
_DICE_CALL = re.compile(rf"\b{DICE_FUNCTION}\((\w+)_l, \1_r\)", re.IGNORECASE)


def share_dice(sqls: list[str]) -> tuple[list[str], list[str]]:
    """Each pair's Dice of a CLK computed once, however many levels test it.

    DuckDB evaluates `jup_dice(clk_given_l, clk_given_r)` anew in every CASE branch that
    names it (up to three a comparison). Returns the SQL with each such call replaced by a
    column `__jup_dice_<clk>`, and the CLK names that need that column; the caller
    computes `jup_dice(...) AS __jup_dice_<clk>` once per pair where the pair is formed.
    """
    clks = sorted({m.group(1) for sql in sqls for m in _DICE_CALL.finditer(sql)})
    return [_DICE_CALL.sub(lambda m: f"__jup_dice_{m.group(1)}", sql) for sql in sqls], clks


# ------------------------------------------------------------------ filter bands

# `band_<clk>_<i>`: word i of a CLK when it has a bit set, as a BIGINT (the word's two
# 64-bit halves XORed). Two records share a band when that 128-bit stretch of their filters
# is identical: for filters under one salt (same postcode, same date of birth) that happens
# for similar values and almost never otherwise, and across salts the bits are unrelated.
# The linkage unit derives bands from the filters it holds, so blocking on them publishes
# nothing new: it reaches pairs with one agreeing salt and fuzzy names or addresses that no
# match key groups (FEBRL4 blocking recall 0.945 -> 0.983 with 0.06 more pairs per record).
# `band64_<clk>_<h>`: half h of those words (word h // 2), for filters under one salt that
# are alike but differ somewhere in every 128-bit word (FEBRL4: 41 true pairs never compared
# with a filter Dice of 0.44-0.95; bench/RESULTS-linkage.md, session 13).
_BAND = re.compile(r"\bband(64)?_(clk_\w+?)_(\d+)\b")
_LOW64 = "CAST(18446744073709551615 AS HUGEINT)"
_2_63 = "CAST(9223372036854775808 AS HUGEINT)"
_2_64 = "CAST(18446744073709551616 AS HUGEINT)"


def band_columns(rules: list[str]) -> dict[str, tuple[str, int]]:
    """The band columns the rules name: column -> (CLK column, band index). A `band64_`
    column's index counts 64-bit halves (index // 2 is the word, index % 2 the half)."""
    return {m.group(0): (m.group(2), int(m.group(3))) for rule in rules for m in _BAND.finditer(rule)}


def _half_sql(clk: str, half: int) -> str:
    w = f"struct_extract({clk}, 'w{half // 2}')"
    part = f"(({w} >> {64 * (half % 2)}) & {_LOW64})"
    return (f"CASE WHEN {part} <> 0 THEN CAST({part} - CASE WHEN {part} >= {_2_63} "
            f"THEN {_2_64} ELSE 0 END AS BIGINT) END")


def band_sql(clk: str, word: int) -> str:
    """SQL of one band over a CLK words struct (NULL for an all-zero word or no CLK)."""
    w = f"struct_extract({clk}, 'w{word}')"
    folded = f"xor({w} & {_LOW64}, ({w} >> 64) & {_LOW64})"  # unsigned 64 bits, as HUGEINT
    return (f"CASE WHEN {w} <> 0 THEN CAST({folded} - CASE WHEN {folded} >= {_2_63} "
            f"THEN {_2_64} ELSE 0 END AS BIGINT) END")


def band_select(have: set[str], rules: list[str], words: int) -> dict[str, str]:
    """The band columns the rules name whose CLK is among `have` (columns of CLKs as word
    structs) and which `have` lacks: column -> its SQL."""
    wanted = {c: (clk, i) for c, (clk, i) in band_columns(rules).items()
              if clk in have and (i // 2 if c.startswith("band64_") else i) < words and c not in have}
    return {c: _half_sql(clk, i) if c.startswith("band64_") else band_sql(clk, i)
            for c, (clk, i) in sorted(wanted.items())}


def add_band_columns(con: duckdb.DuckDBPyConnection, table: str, rules: list[str], words: int) -> list[str]:
    """Add to `table` (CLKs as word structs) the band columns the rules name whose CLK the
    table carries; returns the columns added."""
    have = {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}
    wanted = band_select(have, rules, words)
    if wanted:
        extra = ", ".join(f"{sql} AS {c}" for c, sql in wanted.items())
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT *, {extra} FROM {table}")
    return list(wanted)
