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
