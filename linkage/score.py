"""Person resolution: score one encoded identity against a finished run, no re-linking.

Driven entirely by the run's own files, so whatever comparisons, levels, weights and
blocking rules the run was trained with are the ones applied here:

- RUN_DIR/records.parquet (each record's encodings + entity id) is read once per process
  into numpy arrays: int64 tokens with a validity mask, CLKs as uint64 words with their
  popcounts, and each term-frequency column's frequencies over the run's records.
- Each blocking rule of settings.json that is a conjunction of `l.a = r.b` terms becomes
  a sorted hash index over the records' `b` values; a probe's candidates are a few
  binary searches (microseconds), checked for exact equality. A rule of any other form
  is applied as SQL in DuckDB over the probe and the records (correct, but a scan).
- Each comparison level's `sql_condition` of model.json is compiled (columns,
  `=`/`<>`/`<`/`>`..., `IS [NOT] NULL`, AND/OR, numbers, the Dice macro) into plain
  Python evaluated pair by pair (a handful of candidates, the usual case: ~0.1 ms) and
  into numpy over all candidates (many); a comparison using anything else is evaluated
  by DuckDB on a per-thread connection over a table of just those candidate pairs. The
  match weight is Splink's: log2 prior odds + log2(m/u) of each level + term-frequency
  adjustments, so it agrees with links.parquet (tests compare with Splink itself).

The loaded run is immutable and shared; a call allocates only its own arrays (DuckDB
fallbacks use one connection per thread), so concurrent calls need no lock.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from splink.internals.comparison_level import _default_m_values, _default_u_values
from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT

from linkage.clk import DICE_FUNCTION, WORD_BYTES, band_columns, words_for_bits
from linkage.settings import ENCODED_COLUMNS, equality_terms

_ID_COLUMNS = ("source", "ref", "entity_id")
_NOT_ENCODINGS = {*_ID_COLUMNS, "fingerprint", "unique_id"}


class ScoringError(Exception):
    """The run cannot be scored against (missing or unreadable files), or the probe is bad."""


# ------------------------------------------------------------------ the run's data


@dataclass(frozen=True)
class _Column:
    """One encoded column of the run's records, as numpy arrays."""

    values: np.ndarray  # int64 tokens (nulls as 0), or uint64 words (n, w) for a CLK
    valid: np.ndarray  # bool
    popcount: np.ndarray | None = None  # CLKs only: bits set per record

    @property
    def is_clk(self) -> bool:
        return self.popcount is not None


def _int_column(arr: pa.ChunkedArray) -> _Column:
    arr = arr.combine_chunks()
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return _Column(arr.fill_null(0).to_numpy().astype(np.int64, copy=False), valid)


def _clk_words(blob: bytes, width: int) -> np.ndarray:
    """A CLK's bytes as uint64 words, zero-padded to `width` bytes."""
    return np.frombuffer(blob.ljust(width, b"\0"), dtype=np.uint64)


def _clk_column(chunked: pa.ChunkedArray, width: int) -> _Column:
    arr = chunked.combine_chunks().cast(pa.large_binary())
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    n = len(arr)
    filled = pc.fill_null(arr, pa.scalar(bytes(width), pa.large_binary()))
    lengths = pc.binary_length(filled).to_numpy(zero_copy_only=False)
    if n and bool((lengths == width).all()):
        # The usual case, one CLK length: the values buffer is the word matrix, no copy
        # through Python objects (millions of records load in a second or two).
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[filled.offset:filled.offset + n + 1]
        data = np.frombuffer(filled.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        words = data.view(np.uint64).reshape(n, width // 8)
    else:
        words = np.zeros((n, width // 8), dtype=np.uint64)
        for i, blob in enumerate(arr.to_pylist()):
            if blob is not None:
                words[i] = _clk_words(blob, width)
    popcount = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    return _Column(words, valid, popcount)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 -> uint64), to hash a tuple of tokens into one key."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_HASH_SEED = 0x9E3779B97F4A7C15
_U64 = 2**64 - 1


def _key_hash(parts: list[np.ndarray]) -> np.ndarray:
    h = np.full(len(parts[0]), _HASH_SEED, dtype=np.uint64)
    for p in parts:
        h = _mix(h ^ p.view(np.uint64))
    return h


def _key_hash_one(values: list[int]) -> int:
    """`_key_hash` of one probe's key, in plain ints (numpy on 1-element arrays is ~10x slower)."""
    h = _HASH_SEED
    for v in values:
        x = h ^ (v & _U64)
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
        h = x ^ (x >> 31)
    return h


@dataclass(frozen=True)
class _EqualityIndex:
    """A blocking rule `l.a1 = r.b1 AND ...`: records sorted by a hash of (b1, ...)."""

    probe_columns: tuple[str, ...]
    record_columns: tuple[str, ...]
    hashes: np.ndarray  # sorted
    rows: np.ndarray  # record row of each hash

    @classmethod
    def build(cls, terms: list[tuple[str, str]], columns: dict[str, _Column]) -> _EqualityIndex:
        cols = [columns[b] for _a, b in terms]
        keep = np.logical_and.reduce([c.valid for c in cols])  # NULL never equals
        rows = np.flatnonzero(keep)
        hashes = _key_hash([c.values[rows] for c in cols])
        order = np.argsort(hashes, kind="stable")
        return cls(tuple(a for a, _b in terms), tuple(b for _a, b in terms),
                   hashes[order], rows[order])

    def lookup(self, probe: dict[str, Any], columns: dict[str, _Column]) -> np.ndarray | None:
        values = [probe.get(a) for a in self.probe_columns]
        if any(v is None for v in values):
            return None
        key = np.uint64(_key_hash_one(values))
        lo = self.hashes.searchsorted(key, side="left")
        hi = self.hashes.searchsorted(key, side="right")
        rows = self.rows[lo:hi]
        for b, v in zip(self.record_columns, values, strict=True):  # drop hash collisions
            rows = rows[columns[b].values[rows] == v]
        return rows


# ------------------------------------------------------------------ level conditions

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*|\.\d+|\d+)|(?P<id>\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><>|!=|>=|<=|=|<|>|\(|\)|,))"
)
_COMPARE: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], bool]]] = {
    "=": (np.equal, operator.eq), "<>": (np.not_equal, operator.ne),
    "!=": (np.not_equal, operator.ne), ">=": (np.greater_equal, operator.ge),
    "<=": (np.less_equal, operator.le), ">": (np.greater, operator.gt), "<": (np.less, operator.lt),
}


class _Unsupported(Exception):
    """A condition outside the compiled subset (evaluated by DuckDB instead)."""


class _Call:
    """Per-call state of the vector form: the probe, the candidate rows, memoised operands."""

    def __init__(self, probe: dict[str, Any], rows: np.ndarray):
        self.probe, self.rows = probe, rows
        self.memo: dict[str, Any] = {}


# Every condition is compiled twice, for the two ways a call evaluates it:
# - vector: over all candidates at once; an operand returns (values, valid) arrays (a
#   CLK: (words, popcount, valid)), a condition the mask of candidates where it is TRUE;
# - scalar: for one (probe, candidate) pair in plain Python, cheaper for a handful of
#   candidates; an operand returns a value or None (a CLK: (bits as int, popcount)).
# Conditions use only AND/OR (no NOT), so "TRUE" is monotone in its parts and a NULL
# part can be treated as not TRUE, exactly as SQL's CASE WHEN does.
Operand = Callable[[_Call], tuple]
Condition = Callable[[_Call], np.ndarray]
ScalarOperand = Callable[[dict, dict], Any]
ScalarCondition = Callable[[dict, dict], bool]


class _ConditionCompiler:
    def __init__(self, sql: str, columns: dict[str, _Column]):
        self.columns = columns
        self.used: set[str] = set()  # record columns the condition reads
        self.tokens: list[tuple[str, str]] = []
        pos, sql = 0, sql.strip()
        while pos < len(sql):
            m = _TOKEN.match(sql, pos)
            if not m or m.end() == pos:
                raise _Unsupported(sql[pos:])
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def compile(self) -> tuple[Condition, ScalarCondition]:
        cond = self._or()
        if self.i != len(self.tokens):
            raise _Unsupported(f"unexpected {self.tokens[self.i][1]!r}")
        return cond

    def _peek(self) -> str:
        return self.tokens[self.i][1].upper() if self.i < len(self.tokens) else ""

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise _Unsupported("unexpected end")
        tok = self.tokens[self.i]
        if expected is not None and tok[1].upper() != expected:
            raise _Unsupported(f"expected {expected}, got {tok[1]!r}")
        self.i += 1
        return tok

    def _or(self) -> tuple[Condition, ScalarCondition]:
        parts = [self._and()]
        while self._peek() == "OR":
            self._take()
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        vec, sca = [p[0] for p in parts], [p[1] for p in parts]
        if len(sca) == 2:  # the common case (a null level), without a generator
            first, second = sca
            return (lambda c: functools.reduce(np.logical_or, [p(c) for p in vec]),
                    lambda pr, ca: first(pr, ca) or second(pr, ca))
        return (lambda c: functools.reduce(np.logical_or, [p(c) for p in vec]),
                lambda pr, ca: any(p(pr, ca) for p in sca))

    def _and(self) -> tuple[Condition, ScalarCondition]:
        parts = [self._primary()]
        while self._peek() == "AND":
            self._take()
            parts.append(self._primary())
        if len(parts) == 1:
            return parts[0]
        vec, sca = [p[0] for p in parts], [p[1] for p in parts]
        return (lambda c: functools.reduce(np.logical_and, [p(c) for p in vec]),
                lambda pr, ca: all(p(pr, ca) for p in sca))

    def _primary(self) -> tuple[Condition, ScalarCondition]:
        if self._peek() == "(":
            # A parenthesised condition (operands are never parenthesised in the subset).
            self._take("(")
            inner = self._or()
            self._take(")")
            return inner
        (left, left_s), left_clk, _ = self._operand()
        if self._peek() == "IS":
            self._take()
            negate = self._peek() == "NOT"
            if negate:
                self._take()
            self._take("NULL")
            if negate:
                return (lambda c: np.asarray(left(c)[-1], dtype=bool),
                        lambda pr, ca: left_s(pr, ca) is not None)
            return (lambda c: ~np.asarray(left(c)[-1], dtype=bool),
                    lambda pr, ca: left_s(pr, ca) is None)
        kind, op = self._take()
        if kind != "op" or op not in _COMPARE:
            raise _Unsupported(op)
        (right, right_s), right_clk, _ = self._operand()
        fn, scalar_fn = _COMPARE[op]
        if left_clk or right_clk:
            if not (left_clk and right_clk) or op not in ("=", "<>", "!="):
                raise _Unsupported("CLK compared other than for equality")
            same = op == "="

            def clk_cond(c: _Call) -> np.ndarray:
                (wa, _na, va), (wb, _nb, vb) = left(c), right(c)
                equal = np.all(wa == wb, axis=-1)
                return va & vb & (equal if same else ~equal)

            def clk_cond_s(pr: dict, ca: dict) -> bool:
                a, b = left_s(pr, ca), right_s(pr, ca)
                return a is not None and b is not None and (a[0] == b[0]) == same

            return clk_cond, clk_cond_s

        def cond(c: _Call) -> np.ndarray:
            (a, va), (b, vb) = left(c), right(c)
            return va & vb & fn(a, b)

        def cond_s(pr: dict, ca: dict) -> bool:
            a, b = left_s(pr, ca), right_s(pr, ca)
            return a is not None and b is not None and scalar_fn(a, b)

        return cond, cond_s

    def _operand(self) -> tuple[tuple[Operand, ScalarOperand], bool, str]:
        """An operand (both forms), whether it is a CLK, and a key naming it."""
        kind, text = self._take()
        if kind == "num":
            value = float(text) if any(ch in text for ch in ".eE") else int(text)
            return ((lambda _c: (value, True)), (lambda _pr, _ca: value)), False, text
        if kind != "id":
            raise _Unsupported(text)
        name = text.strip('"')
        if self._peek() == "(" and name.lower() == "greatest":
            return self._greatest()
        if self._peek() == "(":
            if name.lower() != DICE_FUNCTION:
                raise _Unsupported(f"function {name}")
            self._take("(")
            (a, a_s), a_clk, a_key = self._operand()
            self._take(",")
            (b, b_s), b_clk, b_key = self._operand()
            self._take(")")
            if not (a_clk and b_clk):
                raise _Unsupported(f"{name} of non-CLK columns")
            key = f"dice({a_key},{b_key})"

            def dice(c: _Call) -> tuple:
                got = c.memo.get(key)
                if got is None:
                    (wa, na, va), (wb, nb, vb) = a(c), b(c)
                    common = np.bitwise_count(wa & wb).sum(axis=-1, dtype=np.int64)
                    denom = na + nb
                    ok = va & vb & (denom != 0)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        got = (2.0 * common / denom, ok)
                    c.memo[key] = got
                return got

            def dice_s(pr: dict, ca: dict) -> float | None:
                x, y = a_s(pr, ca), b_s(pr, ca)
                if x is None or y is None or x[1] + y[1] == 0:
                    return None
                return 2.0 * (x[0] & y[0]).bit_count() / (x[1] + y[1])

            return (dice, dice_s), False, key
        side, base = name[-2:].lower(), name[:-2]
        if side not in ("_l", "_r") or base not in self.columns:
            raise _Unsupported(f"column {name}")
        column = self.columns[base]
        if side == "_l":
            return ((_probe_operand(base, column), lambda pr, _ca: pr.get(base)),
                    column.is_clk, f"l.{base}")
        self.used.add(base)
        return ((_record_operand(base, column), lambda _pr, ca: ca.get(base)),
                column.is_clk, f"r.{base}")

    def _greatest(self) -> tuple[tuple[Operand, ScalarOperand], bool, str]:
        """greatest(a, b, ...) of numeric operands: the largest non-NULL one, NULL when all
        are (DuckDB's semantics; the v2 comparisons take the best Dice over salted views)."""
        self._take("(")
        parts = [self._operand()]
        while self._peek() == ",":
            self._take(",")
            parts.append(self._operand())
        self._take(")")
        if any(clk for _, clk, _ in parts):
            raise _Unsupported("greatest of CLK columns")
        vec, sca = [p[0][0] for p in parts], [p[0][1] for p in parts]
        key = "greatest(" + ",".join(k for _, _, k in parts) + ")"

        def best(c: _Call) -> tuple:
            got = c.memo.get(key)
            if got is None:
                values, valid = None, None
                for op in vec:
                    v, ok = op(c)
                    v = np.where(ok, v, -np.inf)
                    values = v if values is None else np.maximum(values, v)
                    valid = ok if valid is None else (valid | ok)
                got = c.memo[key] = (values, valid)
            return got

        def best_s(pr: dict, ca: dict) -> float | None:
            found = [x for x in (op(pr, ca) for op in sca) if x is not None]
            return max(found) if found else None

        return (best, best_s), False, key


def _probe_operand(name: str, column: _Column) -> Operand:
    def probe(c: _Call) -> tuple:
        value = c.probe.get(name)
        if column.is_clk:
            if value is None:
                return np.zeros(column.values.shape[1], np.uint64), 0, False
            words = _clk_words(value, 8 * column.values.shape[1])
            return words, int(np.bitwise_count(words).sum()), True
        return (0, False) if value is None else (value, True)

    return probe


def _record_operand(name: str, column: _Column) -> Operand:
    key = f"r:{name}"

    def record(c: _Call) -> tuple:
        got = c.memo.get(key)
        if got is None:
            rows = c.rows
            if column.is_clk:
                got = (column.values[rows], column.popcount[rows], column.valid[rows])
            else:
                got = (column.values[rows], column.valid[rows])
            c.memo[key] = got
        return got

    return record


# ------------------------------------------------------------------ the model


def _level_weight(level: dict[str, Any]) -> float:
    """log2 of the level's Bayes factor m/u, as Splink computes it (0 for the null level)."""
    if level.get("is_null_level"):
        return 0.0
    m, u = level.get("m_probability"), level.get("u_probability")
    if m is None or u is None:
        return 0.0
    if m == 0:
        return -1e9  # Splink: a Bayes factor of 0, i.e. never a match
    if u == 0:
        return 1e9
    return math.log2(m / u)


def _exact_u(levels: list[dict[str, Any]], column: str) -> float | None:
    """u of the level that is exactly `column_l = column_r` (Splink's tf base)."""
    pattern = re.compile(rf'^\s*"?{column}_l"?\s*=\s*"?{column}_r"?\s*$', re.IGNORECASE)
    for lv in levels:
        if pattern.match(lv["sql_condition"]) and lv.get("u_probability"):
            return lv["u_probability"]
    return None


@dataclass(frozen=True)
class _Level:
    weight: float
    condition: Condition | None  # None: ELSE (or not compiled)
    scalar: ScalarCondition | None
    sql: str
    tf_column: str | None  # term-frequency adjustment, when the level has one
    tf_weight: float
    tf_log2_u: float
    label: str = ""
    gamma: int | None = None  # Splink's comparison vector value (-1: the null level)


@dataclass(frozen=True)
class _Comparison:
    name: str
    levels: tuple[_Level, ...]
    compiled: bool  # False: every condition is evaluated by DuckDB
    columns: frozenset[str]  # record columns its conditions read
    has_tf: bool = False  # some level adjusts for term frequency (Splink adds a tf bar)


def _effective_levels(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The levels with the m and u Splink scores with: a level EM left untrained (None) takes
    the comparison's default for its position, and "level not observed" counts as 1e-6."""
    n = sum(1 for lv in raw if not lv.get("is_null_level"))
    defaults = {"m_probability": _default_m_values(n), "u_probability": _default_u_values(n)}
    out, vector_value = [], n - 1  # Splink numbers the non-null levels from n - 1 down to 0
    for lv in raw:
        if lv.get("is_null_level"):
            out.append(lv)
            continue
        lv = dict(lv)
        for key, values in defaults.items():
            if lv.get(key) == LEVEL_NOT_OBSERVED_TEXT:
                lv[key] = 1e-6
            elif lv.get(key) is None:
                lv[key] = values[vector_value]
        vector_value -= 1
        out.append(lv)
    return out


def _compile_comparison(comp: dict[str, Any], columns: dict[str, _Column]) -> _Comparison:
    raw = _effective_levels(comp["comparison_levels"])
    exact_u = {
        lv["tf_adjustment_column"]: _exact_u(raw, lv["tf_adjustment_column"])
        for lv in raw if lv.get("tf_adjustment_column")
    }
    levels, compiled, used = [], True, set()
    next_gamma = sum(1 for lv in raw if not lv.get("is_null_level"))
    for lv in raw:
        if lv.get("is_null_level"):
            gamma = -1
        else:
            next_gamma -= 1
            gamma = next_gamma
        sql = lv["sql_condition"]
        cond = scalar = None
        if sql.strip().upper() != "ELSE":
            try:
                compiler = _ConditionCompiler(sql, columns)
                cond, scalar = compiler.compile()
                used |= compiler.used
            except _Unsupported:
                compiled = False
        col, w = lv.get("tf_adjustment_column"), lv.get("tf_adjustment_weight", 1.0)
        use_tf = bool(col and w and exact_u.get(col) and not lv.get("is_null_level"))
        levels.append(_Level(
            weight=_level_weight(lv), condition=cond, scalar=scalar, sql=sql,
            tf_column=col if use_tf else None, tf_weight=float(w or 0.0),
            tf_log2_u=math.log2(exact_u[col]) if use_tf else 0.0,
            label=str(lv.get("label_for_charts", "")), gamma=gamma,
        ))
    return _Comparison(comp.get("output_column_name", "?"), tuple(levels), compiled,
                       frozenset(used), any(lv.get("tf_adjustment_column") for lv in raw))


def _rule_text(rule: Any) -> str:
    # settings.json holds strings; a Splink model.json holds {"blocking_rule": ...}.
    return rule["blocking_rule"] if isinstance(rule, dict) else str(rule)


# ------------------------------------------------------------------ the scorer


class RunScorer:
    """A run's records and model, ready to score identities (thread-safe, no lock)."""

    # Up to this many candidates a call evaluates pairs one by one in plain Python (a
    # few microseconds a pair); beyond, over arrays (numpy's per-operation cost then
    # pays off). bench/RESULTS-score.md has the measurements behind the figure.
    scalar_max_candidates = 24

    def __init__(self, run_dir: Path, only: set[tuple[str, str]] | None = None):
        """`only`: load just these records (source, ref) of the run, e.g. to explain a few
        pairs of a large run; term frequencies still count every record of the run."""
        run_dir = Path(run_dir)
        try:
            model = json.loads((run_dir / "model.json").read_text())
            settings = json.loads((run_dir / "settings.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScoringError(f"{run_dir}: cannot read the run's model: {exc}") from exc
        records = run_dir / "records.parquet"
        if not records.is_file():
            raise ScoringError(f"{run_dir}: no records.parquet (not a link run?)")
        try:
            table = pq.read_table(records) if only is None else _records_subset(records, only)
        except (OSError, pa.ArrowException) as exc:
            raise ScoringError(f"{records}: cannot read: {exc}") from exc
        missing = [c for c in _ID_COLUMNS if c not in table.column_names]
        if missing:
            raise ScoringError(f"{records}: missing column(s) {', '.join(missing)}")
        self.n = table.num_rows
        self.ids = {c: table.column(c).to_pylist() for c in _ID_COLUMNS}

        # Encoded columns: int64 tokens and binary CLKs (one width for all CLKs, as the
        # DuckDB word structs use).
        self.columns: dict[str, _Column] = {}
        self.column_types: dict[str, pa.DataType] = {}
        clk_names = [f.name for f in table.schema
                     if f.name not in _NOT_ENCODINGS and pa.types.is_binary(f.type)]
        max_bytes = max((pc.max(pc.binary_length(table.column(c))).as_py() or 0
                         for c in clk_names), default=0)
        self.clk_words = words_for_bits(8 * (max_bytes or WORD_BYTES))
        width = self.clk_words * WORD_BYTES
        for f in table.schema:
            if f.name in _NOT_ENCODINGS:
                continue
            if pa.types.is_integer(f.type):
                self.columns[f.name] = _int_column(table.column(f.name).cast(pa.int64()))
            elif pa.types.is_binary(f.type):
                self.columns[f.name] = _clk_column(table.column(f.name), width)
            else:
                continue
            self.column_types[f.name] = f.type

        try:
            prior = float(model["probability_two_random_records_match"])
            self.prior_weight = math.log2(prior / (1 - prior))
            self.comparisons = tuple(_compile_comparison(c, self.columns) for c in model["comparisons"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ScoringError(f"{run_dir / 'model.json'}: not a trained Splink model ({exc!r})") from exc
        # Term frequencies over the run's records (Splink's tf tables for the run).
        self.tf_values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.tf_records: dict[str, np.ndarray] = {}
        for col in sorted({lv.tf_column for c in self.comparisons for lv in c.levels if lv.tf_column}):
            if col not in self.columns:
                raise ScoringError(f"{run_dir}: term-frequency column {col} not in records.parquet")
            column = self.columns[col]
            every = column if only is None else _int_column(
                pq.read_table(records, columns=[col]).column(col).cast(pa.int64()))
            values, counts = np.unique(every.values[every.valid], return_counts=True)
            freqs = counts.astype(np.float64) / counts.sum()
            self.tf_values[col] = (values, freqs)
            per_record = np.full(self.n, np.nan)
            per_record[column.valid] = freqs[np.searchsorted(values, column.values[column.valid])]
            self.tf_records[col] = per_record

        self.indexes: list[_EqualityIndex] = []
        self.sql_rules: list[str] = []
        rules = settings.get("splink", {}).get("blocking_rules_to_generate_predictions")
        if not rules:  # Splink saves them with the model too
            rules = model.get("blocking_rules_to_generate_predictions") or []
        for rule in rules:
            text = _rule_text(rule)
            if band_columns([text]):
                # Filter bands exist only in the link run's table; a probe's candidates come
                # from the other rules (a probe is one identity, not a salt group).
                continue
            terms = equality_terms(text)
            if terms and all(a in self.columns and b in self.columns
                             and not self.columns[b].is_clk for a, b in terms):
                self.indexes.append(_EqualityIndex.build(terms, self.columns))
            else:
                self.sql_rules.append(text)
        self.scalar_columns = tuple(sorted(set().union(*(c.columns for c in self.comparisons))))
        self.all_compiled = all(c.compiled for c in self.comparisons)
        self._local = threading.local()
        # The fallbacks read the records from arrow (one chunk, so `take` is fast), each
        # row carrying its number: DuckDB's scan order is not the table's.
        self._records = None
        if self.sql_rules or not self.all_compiled:
            self._records = self._fallback_table()

    # -------------------------------------------------------------- scoring

    def score(self, identity: dict[str, Any]) -> list[dict[str, Any]]:
        probe = self._probe(identity)
        found = [rows for ix in self.indexes if (rows := ix.lookup(probe, self.columns)) is not None]
        if self.sql_rules:
            found.append(self._sql_rule_candidates(probe))
        rows = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
        if not len(rows):
            return []
        weights = self._weights(probe, rows)
        out = []
        source, ref, entity = self.ids["source"], self.ids["ref"], self.ids["entity_id"]
        for row, weight in zip(rows.tolist(), weights.tolist(), strict=True):
            weight = max(min(weight, 1000.0), -1000.0)
            prob = 2**weight / (1 + 2**weight)
            out.append({"entity_id": entity[row], "source": source[row], "ref": ref[row],
                        "match_weight": weight, "match_probability": prob})
        out.sort(key=lambda c: (-c["match_probability"], c["entity_id"], c["source"], c["ref"]))
        return out

    def _weights(self, probe: dict[str, Any], rows: np.ndarray) -> np.ndarray:
        if self.all_compiled and len(rows) <= self.scalar_max_candidates:
            return self._weights_scalar(probe, rows)
        call = _Call(probe, rows)
        by_sql = {} if self.all_compiled else self._levels_sql(probe, rows)
        total = np.full(len(rows), self.prior_weight)
        for comp in self.comparisons:
            level_of = self._levels_numpy(comp, call) if comp.compiled else by_sql[comp.name]
            # Added in the settings' order, as Splink's SQL sum does.
            weight = np.zeros(len(rows))
            for i, level in enumerate(comp.levels):
                at = level_of == i
                if not at.any():
                    continue
                weight[at] = level.weight
                if level.tf_column:
                    weight[at] += self._tf_adjustment(level, probe, rows[at])
            total = total + weight
        return total

    def row_of(self, source: str, ref: str) -> int:
        """The row of record (source, ref) in the run; ScoringError if absent."""
        index = self.__dict__.get("_row_index")
        if index is None:
            index = self.__dict__["_row_index"] = {
                (s, r): i for i, (s, r) in enumerate(zip(self.ids["source"], self.ids["ref"], strict=True))}
        try:
            return index[(source, ref)]
        except KeyError:
            raise ScoringError(f"no record {source}/{ref} in this run") from None

    def record_as_probe(self, row: int) -> dict[str, Any]:
        """A record of the run in the form `score` takes (tokens as ints, CLKs as bytes)."""
        probe: dict[str, Any] = {}
        for name, column in self.columns.items():
            if not column.valid[row]:
                continue
            if column.is_clk:
                probe[name] = column.values[row].tobytes()
            else:
                probe[name] = int(column.values[row])
        return probe

    def explain(self, row_l: int, row_r: int) -> list[dict[str, Any]]:
        """The match-weight waterfall of the pair (record row_l as l, row_r as r): the
        prior, each comparison's level and weight (and its term-frequency adjustment, as a
        separate bar where the comparison has one), then the total, in the shape of
        Splink's waterfall chart records (`column_name`, `label_for_charts`,
        `comparison_vector_value`, `log2_bayes_factor`, `bayes_factor`)."""
        probe = self.record_as_probe(row_l)
        rows = np.array([row_r], dtype=np.int64)
        call = _Call(probe, rows)
        by_sql = {} if self.all_compiled else self._levels_sql(probe, rows)
        out = [{"column_name": "Prior", "label_for_charts": "Starting match weight (prior)",
                "comparison_vector_value": None, "log2_bayes_factor": self.prior_weight}]
        total = self.prior_weight
        for comp in self.comparisons:
            at = int((self._levels_numpy(comp, call) if comp.compiled else by_sql[comp.name])[0])
            level = comp.levels[at] if at >= 0 else None
            weight = level.weight if level is not None else 0.0
            out.append({"column_name": comp.name,
                        "label_for_charts": level.label if level else "",
                        "comparison_vector_value": level.gamma if level else None,
                        "log2_bayes_factor": weight})
            total += weight
            if comp.has_tf:
                tf = 0.0
                if level is not None and level.tf_column:
                    tf = float(self._tf_adjustment(level, probe, rows)[0])
                out.append({"column_name": f"tf_{comp.name}",
                            "label_for_charts": (f"Term freq adjustment on {level.tf_column}"
                                                 if level is not None and level.tf_column
                                                 else (level.label if level else "")),
                            "comparison_vector_value": level.gamma if level else None,
                            "log2_bayes_factor": tf})
                total += tf
        out.append({"column_name": "Final score", "label_for_charts": "Final score",
                    "comparison_vector_value": None, "log2_bayes_factor": total})
        for i, rec in enumerate(out):
            rec["bayes_factor"] = 2.0 ** rec["log2_bayes_factor"]
            rec["bar_sort_order"] = i
        return out

    def _weights_scalar(self, probe: dict[str, Any], rows: np.ndarray) -> np.ndarray:
        """The same weights as `_weights`, pair by pair in plain Python."""
        pr = dict(probe)
        for name, value in probe.items():
            column = self.columns[name]
            if column.is_clk:
                bits = int.from_bytes(value.ljust(8 * column.values.shape[1], b"\0"), "little")
                pr[name] = (bits, bits.bit_count())
        row_list = rows.tolist()
        cands: list[dict[str, Any]] = [{} for _ in row_list]
        for name in self.scalar_columns:
            column = self.columns[name]
            valid = column.valid[rows].tolist()
            if column.is_clk:
                words, pops = column.values[rows], column.popcount[rows].tolist()
                for i, ca in enumerate(cands):
                    ca[name] = ((int.from_bytes(words[i].tobytes(), "little"), pops[i])
                                if valid[i] else None)
            else:
                for ca, v, ok in zip(cands, column.values[rows].tolist(), valid, strict=True):
                    ca[name] = v if ok else None
        out = []
        for row, ca in zip(row_list, cands, strict=True):
            total = self.prior_weight
            for comp in self.comparisons:
                weight = 0.0  # no level and no ELSE: Splink's CASE gives NULL, weight 0
                for level in comp.levels:
                    if level.scalar is None or level.scalar(pr, ca):
                        weight = level.weight
                        if level.tf_column:
                            weight += self._tf_adjustment_one(level, probe, row)
                        break
                total = total + weight
            out.append(total)
        return np.array(out, dtype=np.float64)

    @staticmethod
    def _levels_numpy(comp: _Comparison, call: _Call) -> np.ndarray:
        level_of = np.full(len(call.rows), -1, dtype=np.int64)
        for i, level in enumerate(comp.levels):
            open_ = level_of < 0
            if not open_.any():
                break
            hit = open_ if level.condition is None else open_ & level.condition(call)
            level_of[hit] = i
        return level_of  # -1: no level and no ELSE (weight 0, as Splink's CASE gives NULL)

    def _tf_of_probe(self, column: str, probe: dict[str, Any]) -> float:
        """The probe value's term frequency among the run's records (NaN: unknown)."""
        values, freqs = self.tf_values[column]
        v = probe.get(column)
        if v is not None:
            i = int(np.searchsorted(values, v))
            if i < len(values) and values[i] == v:
                return float(freqs[i])
        return math.nan

    def _tf_adjustment(self, level: _Level, probe: dict[str, Any], rows: np.ndarray) -> np.ndarray:
        col = level.tf_column
        tf_l = self._tf_of_probe(col, probe)
        tf_r = self.tf_records[col][rows]
        # greatest(coalesce(tf_l, tf_r), coalesce(tf_r, tf_l)): the larger known one.
        tf = np.fmax(tf_r, tf_l)
        adj = level.tf_weight * (level.tf_log2_u - np.log2(tf))
        return np.where(np.isnan(adj), 0.0, adj)

    def _tf_adjustment_one(self, level: _Level, probe: dict[str, Any], row: int) -> float:
        tf_l, tf_r = self._tf_of_probe(level.tf_column, probe), float(self.tf_records[level.tf_column][row])
        tf = tf_r if math.isnan(tf_l) else tf_l if math.isnan(tf_r) else max(tf_l, tf_r)
        return 0.0 if math.isnan(tf) else level.tf_weight * (level.tf_log2_u - math.log2(tf))

    # -------------------------------------------------------------- DuckDB fallbacks

    def _fallback_table(self) -> pa.Table:
        """The records for DuckDB: tokens, CLKs zero-padded to one width, row numbers."""
        width = WORD_BYTES * self.clk_words
        arrays, names = [], []
        for name, column in self.columns.items():
            if column.is_clk:
                fixed = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(width), self.n, [None, pa.py_buffer(np.ascontiguousarray(column.values))])
                arr = pc.if_else(pa.array(column.valid), fixed.cast(pa.binary()), None)
            else:
                arr = pa.array(column.values, pa.int64(), mask=~column.valid)
            arrays.append(arr)
            names.append(name)
        arrays.append(pa.array(np.arange(self.n, dtype=np.int64)))
        names.append("jup_row")
        return pa.Table.from_arrays(arrays, names=names)

    def _con(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = duckdb.connect()
            # The fallback tables hold CLKs as BLOBs of one width (`_fallback_table`), so
            # Dice is taken on them as BIT strings: the same integer popcounts as the
            # run's word-struct macro (linkage.clk), with no struct to build per call.
            con.execute(
                f"CREATE OR REPLACE TEMP MACRO {DICE_FUNCTION}(a, b) AS "
                "2.0 * bit_count(a::BIT & b::BIT) / nullif(bit_count(a::BIT) + bit_count(b::BIT), 0)"
            )
            self._local.con = con
        return con

    def _probe_table(self, probe: dict[str, Any]) -> pa.Table:
        width = WORD_BYTES * self.clk_words
        return pa.table({
            c: pa.array([probe[c].ljust(width, b"\0") if self.columns[c].is_clk and c in probe
                         else probe.get(c)], t)
            for c, t in self.column_types.items()
        })

    def _levels_sql(self, probe: dict[str, Any], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Level of each candidate in each comparison outside the compiled subset, by
        Splink's own SQL in DuckDB (one query over just the candidate pairs)."""
        assert self._records is not None
        cand = self._records.take(pa.array(rows)).append_column(
            "jup_pos", pa.array(np.arange(len(rows), dtype=np.int64)))
        uncompiled = [c for c in self.comparisons if not c.compiled]
        # Only the columns these conditions name (a query over all of them plans slower).
        text = " ".join(lv.sql for comp in uncompiled for lv in comp.levels)
        cols = ", ".join(
            f"l.{c} AS {c}_l, r.{c} AS {c}_r"
            for c in self.column_types if re.search(rf"\b{c}_[lr]\b", text)
        ) or "1 AS jup_none"
        cases = ", ".join(
            "CASE " + " ".join(
                f"ELSE {i}" if lv.sql.strip().upper() == "ELSE" else f"WHEN {lv.sql} THEN {i}"
                for i, lv in enumerate(comp.levels)
            ) + " END" for comp in uncompiled
        )
        con = self._con()
        con.register("jup_probe", self._probe_table(probe))
        con.register("jup_cand", cand)
        try:
            got = con.execute(
                f"WITH pairs AS MATERIALIZED (SELECT r.jup_pos, {cols} FROM jup_probe l, jup_cand r) "
                f"SELECT {cases} FROM pairs ORDER BY jup_pos"
            ).fetchnumpy()
        finally:
            con.unregister("jup_probe")
            con.unregister("jup_cand")
        out = {}
        for comp, values in zip(uncompiled, got.values(), strict=True):
            values = np.ma.filled(np.ma.asarray(values).astype(np.int64), -1)
            out[comp.name] = values
        return out

    def _sql_rule_candidates(self, probe: dict[str, Any]) -> np.ndarray:
        """Rows of the records that the blocking rules outside the index select (a scan)."""
        assert self._records is not None
        con = self._con()
        con.register("jup_probe", self._probe_table(probe))
        con.register("jup_records", self._records)
        try:
            got = con.execute(
                "SELECT DISTINCT r.jup_row FROM jup_probe l, jup_records r WHERE "
                + " OR ".join(f"({rule})" for rule in self.sql_rules)
            ).fetchall()
        finally:
            con.unregister("jup_probe")
            con.unregister("jup_records")
        return np.array([g for (g,) in got], dtype=np.int64)

    def _probe(self, identity: dict[str, Any]) -> dict[str, Any]:
        unknown = set(identity) - set(self.columns) - set(ENCODED_COLUMNS) - {"ref"}
        if unknown:
            raise ScoringError(f"identity row has unknown column(s): {', '.join(sorted(unknown))}")
        probe = {}
        for name, value in identity.items():
            if name == "ref" or value is None or name not in self.columns:
                continue
            column = self.columns[name]
            if column.is_clk:
                if not isinstance(value, bytes | bytearray | memoryview):
                    raise ScoringError(f"identity column {name}: a CLK must be bytes")
                width = 8 * column.values.shape[1]
                if len(value) > width:
                    raise ScoringError(
                        f"identity column {name}: a CLK of {len(value)} bytes, the run's hold "
                        f"at most {width} (encoded with other settings than the run?)")
                probe[name] = bytes(value)
            else:
                if not isinstance(value, int | np.integer) or isinstance(value, bool):
                    raise ScoringError(f"identity column {name}: a token must be an integer")
                probe[name] = int(value)
        return probe


def _records_subset(records: Path, only: set[tuple[str, str]]) -> pa.Table:
    """The rows of records.parquet whose (source, ref) is in `only`, in file order.

    Their row numbers are found from the two id columns alone, then just those rows are
    read (a row-number filter the scan skips whole row groups and pages by): reading every
    column and filtering after held the whole file in memory (2M records: 3.5 GB, 7.5 s;
    this way 0.8 GB, 0.9 s)."""
    con = duckdb.connect()
    try:
        con.register("jup_only", pa.table({"source": pa.array([s for s, _r in only], pa.string()),
                                           "ref": pa.array([r for _s, r in only], pa.string())}))
        path = str(records).replace("'", "''")
        rows = [int(r[0]) for r in con.execute(
            f"SELECT file_row_number FROM read_parquet('{path}', file_row_number = true) f "
            "SEMI JOIN jup_only o ON o.source = f.source AND o.ref = f.ref").fetchall()]
        schema = pq.read_schema(records)
        if not rows:
            return schema.empty_table()
        table = con.sql(
            f"SELECT * EXCLUDE (file_row_number) FROM read_parquet('{path}', file_row_number = true) "
            f"WHERE file_row_number IN ({', '.join(map(str, sorted(rows)))}) ORDER BY file_row_number"
        ).to_arrow_table()
    finally:
        con.close()
    return table.cast(schema)


_cache: dict[str, tuple[tuple[int, int], RunScorer]] = {}
_cache_lock = threading.Lock()


def _scorer_for(run_dir: Path) -> RunScorer:
    # abspath, not resolve(): no system calls on the hot path (a run reached through a
    # symlink just gets its own cache entry).
    run_dir = Path(os.path.abspath(run_dir))
    try:
        st = (run_dir / "model.json").stat()
    except OSError as exc:
        raise ScoringError(f"{run_dir}: not a link run (no model.json)") from exc
    # A run directory replaced by a new run (renamed into place) has a new model.json.
    stamp = (st.st_ino, st.st_mtime_ns)
    got = _cache.get(str(run_dir))  # a dict read is atomic: no lock on the hot path
    if got is not None and got[0] == stamp:
        return got[1]
    with _cache_lock:
        got = _cache.get(str(run_dir))
        if got is None or got[0] != stamp:
            got = _cache[str(run_dir)] = (stamp, RunScorer(run_dir))
    return got[1]


def explain_pair(run_dir: Path, left: tuple[str, str], right: tuple[str, str]) -> dict[str, Any]:
    """Why two records of a run did or did not link: the match-weight waterfall of the
    pair (`RunScorer.explain`), its match probability, and each record's entity.
    `left` and `right` are (source, ref); links.parquet gives each pair's orientation."""
    return explain_pair_with(_scorer_for(Path(run_dir)), left, right)


def explain_pair_with(scorer: RunScorer, left: tuple[str, str], right: tuple[str, str]) -> dict[str, Any]:
    """`explain_pair` with a scorer already loaded (e.g. one holding only these records)."""
    row_l, row_r = scorer.row_of(*left), scorer.row_of(*right)
    waterfall = scorer.explain(row_l, row_r)
    weight = waterfall[-1]["log2_bayes_factor"]
    weight = max(min(weight, 1000.0), -1000.0)
    return {"left": {"source": left[0], "ref": left[1], "entity_id": scorer.ids["entity_id"][row_l]},
            "right": {"source": right[0], "ref": right[1], "entity_id": scorer.ids["entity_id"][row_r]},
            "match_weight": weight, "match_probability": 2**weight / (1 + 2**weight),
            "waterfall": waterfall}


def score_identity_against_run(run_dir: Path, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """Score one encoded identity (a linkage row without `ref`, as
    `connectors.pseudonymise.IdentityEncoder.encode_identity` returns) against the
    records of a finished link run.

    Returns the candidate records found by the run's blocking rules, best first, each
    `{"entity_id", "source", "ref", "match_weight", "match_probability"}`; several may
    belong to one entity. The first call for a run loads it (seconds for millions of
    records); later calls reuse it.
    """
    return _scorer_for(Path(run_dir)).score(identity)
